"""Evaluation: trec_eval's metrics, DPR's answer matching, the systems an evaluation reports, the evaluate command."""
