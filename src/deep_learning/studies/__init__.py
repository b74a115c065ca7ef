"""Many runs under one parent run: grids, sweeps, searches and vectorized groups."""
