"""The two models (a self-contained configuration / modeling pair, copied beside saved weights for
``trust_remote_code``), where they are loaded from (``loading``), and their sentence-transformers export
(``st_export``). The public names are exported by ``modeling_rq2`` itself."""
