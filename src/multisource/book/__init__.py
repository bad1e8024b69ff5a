"""The book machinery: the chapter registry, parameter ranges, execution through papermill,
notebook normalisation and `status`. May import everything below it (experiments, common);
nothing in the package imports it except the command line."""
