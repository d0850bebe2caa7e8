"""The run machinery: training, callbacks, checkpoints, run folders and names, the HPARAMS tab,
config checks, search and cluster. Generic: it reads what the tasks declare (zoo.tasks)."""
