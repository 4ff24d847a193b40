import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(r'__version__ = "([^"]+)"', (here / "cq/__init__.py").read_text()).group(1)

setup(
    name="cq",
    version=version,
    description="Durable, fast background tasks for Django, dispatched over Django Channels.",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["cq", "cq.*"]),
    include_package_data=True,
    python_requires=">=3.11",
    install_requires=[
        "Django>=5.2",
        "channels>=4.3,<5",
        "channels-redis>=4.3,<5",
        "redis>=5",
        "croniter>=2",
        "asgiref>=3.8",
    ],
    extras_require={
        "postgres": ["psycopg[binary]>=3.1"],
        "test": ["pytest>=8", "pytest-django>=4.9", "psycopg[binary]>=3.1"],
    },
    classifiers=[
        "Framework :: Django",
        "Framework :: Django :: 5.2",
        "Framework :: Django :: 6.0",
        "Programming Language :: Python :: 3",
    ],
)
