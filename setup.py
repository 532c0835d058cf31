import re
from pathlib import Path

from setuptools import find_packages, setup

# Read the version without importing the package (its dependencies may not be installed yet).
__version__ = re.search(
    r'__version__ = "([^"]+)"', (Path(__file__).parent / "homeserver" / "__init__.py").read_text()
).group(1)

setup(
    name="homeserver",
    version=__version__,
    description="A Matrix homeserver on Twisted",
    python_requires=">=3.11",
    packages=find_packages(include=["homeserver", "homeserver.*"]),
    package_data={"homeserver": ["storage/schema/**/*.sql", "config/*.yaml"]},
    include_package_data=True,
    install_requires=[
        "twisted[tls]>=23.10",
        "treq>=23.11",
        "pyopenssl>=23.0",
        "service-identity>=23.1",
        "signedjson>=1.1.4",
        "canonicaljson>=2.0",
        "unpaddedbase64>=2.1",
        "pynacl>=1.5",
        "psycopg2>=2.9",
        "pyyaml>=6.0",
        "jsonschema>=4.17",
        "prometheus-client>=0.17",
        "bcrypt>=4.0",
        "Pillow>=10.0",
        # Phone numbers (m.id.phone, msisdn requestToken) normalised as Synapse does.
        "phonenumbers>=8.13",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "hypothesis>=6.80",
            "ruff>=0.5",
            "mypy>=1.8",
            # tests/interop: a real client library and Synapse's admin tool.
            "matrix-nio>=0.25",
            "synadm>=0.46",
        ],
    },
    entry_points={
        "console_scripts": [
            "homeserver = homeserver.app:main",
            "register_new_matrix_user = homeserver.scripts.register_new_matrix_user:main",
            "rotate_signing_key = homeserver.scripts.rotate_signing_key:main",
        ],
    },
)
