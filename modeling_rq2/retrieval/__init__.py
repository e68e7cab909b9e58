"""Retrieval: dense indexes (a registry of FAISS index types), retrieve-then-rerank, and BM25."""
