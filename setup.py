from pathlib import Path

from setuptools import find_packages, setup

version = {}
for line in Path("ssrl_plugin/__init__.py").read_text().splitlines():
    if line.startswith("__version__"):
        exec(line, version)

setup(
    name="spatial-ssrl",
    version=version["__version__"],
    description="Spatial-SSRL pretext tasks, dataset builders and rewards for EasyR1 and verl",
    long_description=Path("README.md").read_text(encoding="utf-8") if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["ssrl_plugin", "ssrl_plugin.*", "data_builders", "data_builders.*", "reward_fns", "reward_fns.*"]),
    include_package_data=True,
    package_data={"ssrl_plugin": ["templates/*.jinja"]},
    install_requires=[
        "numpy>=1.24",
        "pillow>=10.1",  # scalable default font (ImageFont.load_default(size=...))
        "pyarrow>=14",
        "omegaconf>=2.3",
        "h5py>=3.8",
        "xxhash>=3.0",  # source fingerprints (xxh3_128), ~8x faster than sha256
        "tqdm>=4.60",
        "av>=12",  # PyAV: video sequences (index by demuxing, decode only the frames used, by seeking)
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=3", "hypothesis>=6", "datasets>=2.16", "scikit-learn>=1.3"],
        "audit": ["scikit-learn>=1.3"],  # ssrl audit's learned blind solvers (gradient-boosted trees)
    },
    entry_points={"console_scripts": ["ssrl=data_builders.cli:main"]},
)
