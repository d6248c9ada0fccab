"""Orchestration only (no maths): subject, group, study, output naming."""
