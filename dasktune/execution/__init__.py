"""Running experiments: the decision core, the Dask backend and the loop joining them."""
