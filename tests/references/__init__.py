"""Independent implementations the tests compare jaxstyle with, and the weight files they
write: NumPy networks (`numpy_arbitrary`), the PyTorch reference models and baselines
(`torch_gatys`, `torch_arbitrary`, `torch_train`; also run by benchmarks/ as the PyTorch
side of their timings) and synthetic weight files in the real layouts (`weight_files`)."""
