"""The recorded cassettes (real/, bugs/): data, installed with the package as `harness.cassettes`."""
