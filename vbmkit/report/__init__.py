"""Figures (matplotlib / nilearn plotting) and self-contained HTML reports."""
