"""One module per way a dataset is held on disk: bundled arrays, IDX files, CIFAR batches, class folders."""
