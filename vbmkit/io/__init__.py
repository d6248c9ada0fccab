"""The only code that touches files: NIfTI, tables, packaged resources, CAT12/SPM/deepmriprep formats."""
