"""Record and replay as a library. Importing the package registers the journal's recovery with
`Cassette.load`, so any tool that reads a cassette reads the whole of an interrupted recording."""

from . import journal  # noqa: F401
