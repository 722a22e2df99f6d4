"""BERT encoders (MiniLM-L6: sentence-transformers/all-MiniLM-L6-v2) against transformers."""
