"""Install cmg-eval: the cross-modal generalization evaluation harness."""

from setuptools import find_packages, setup

setup(
    name="cmg-eval",
    version="0.1.0",
    description="Cross-modal generalization evaluation of unified audio/video/text encoders",
    python_requires=">=3.11",
    # the top-level `tasks/` folder installs as `cmg_eval.tasks`, never as a top-level `tasks` package (a user
    # project's own `tasks` module would collide with it)
    packages=[*find_packages(include=["cmg_eval", "cmg_eval.*"]), "cmg_eval.tasks"],
    package_dir={"cmg_eval.tasks": "tasks"},
    package_data={"cmg_eval.data": ["labelmaps/*.json"]},
    install_requires=[
        "torch>=2.13",
        "scipy",            # bootstrap, permutation and binomial tests (cmg_eval.compare)
        "torchmetrics",
        "pandas",
        "click",
        "rich",
        "pyyaml",
        "h5py",
        "matplotlib",
    ],
    # scikit-learn: only the cross-check tests use it
    extras_require={"test": ["pytest", "hypothesis", "scikit-learn"], "text": ["transformers>=4.40"]},
    entry_points={"console_scripts": ["cmg-eval=cmg_eval.cli:main"]},
)
