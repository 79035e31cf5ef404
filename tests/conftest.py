import pytest, torch

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long test, skipped unless `make test FLAGS=slow`")
    config.addinivalue_line("markers", "gpu: needs CUDA, skipped unless `make test FLAGS=gpu` (and a GPU is present)")

def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available(): return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords: item.add_marker(skip)
