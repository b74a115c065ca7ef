"""The toolkit from Python: the CLI's reading, comparing and loading as functions whose results display in a notebook."""
