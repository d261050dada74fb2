"""Figures, drawn only from tables (CSV/JSON) and saved maps, never from models: per-cell drawing
(cell), study drawing (study), and what is drawn from which files (build)."""
