"""Pure tensor generators of synthetic data with known answers: T1 phantoms from template
tissue maps and cohorts with planted effects."""
