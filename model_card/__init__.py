"""Model card template of modeling_rq2 (installed as modeling_rq2.model_card_template)."""
