"""Data by job: the datasets and their splits, loaders, digests, and the csv and text sources."""
