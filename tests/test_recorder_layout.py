"""The recorder's own layout (layout.py): what it writes is YAML that PyYAML reads as the same interaction,
its reader gives back exactly that or declines, and a recording whose batches end in a stream stays YAML."""

import time

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.recording.format import Cassette, Interaction, _Loader, _ReadableDumper
from harness.recording.layout import emit, parse
from harness.recording.recorder import CassetteWriter

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
lines = st.lists(st.sampled_from(["", " ", "a", "  b: c", "#x", "- y", "'q'", '"z"', "\t", "é", "\u2028", "{", "..."]),
                 max_size=6).map("\n".join)
headers = st.dictionaries(st.one_of(text.filter(bool), st.sampled_from(["Content-Type", "yes", "1", "a: b"])),
                          st.lists(st.one_of(text, st.sampled_from(["*/*", "2389", "null", "on", "application/json"])),
                                   max_size=3), max_size=4)
scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False,
                   allow_infinity=False), text)


@st.composite
def vcr_dicts(draw):
    extra = draw(st.dictionaries(st.sampled_from(["compact", "chunks", "duration_ms", "id", "faults", "blobs"]),
                                 st.one_of(scalar, st.lists(st.one_of(st.integers(0, 99), text), max_size=3)),
                                 max_size=4))
    resp = {"status": {"code": draw(st.integers(100, 599)), "message": draw(text)},
            "headers": draw(headers), "body": {"string": draw(st.one_of(st.none(), text, lines))}}
    if extra:
        resp["x_tito"] = extra
    return {"request": {"body": draw(st.one_of(st.none(), text, lines)), "headers": draw(headers),
                        "method": draw(st.sampled_from(["GET", "POST"])), "uri": draw(text)}, "response": resp}


@settings(max_examples=400, deadline=None)
@given(vcr_dicts())
def test_what_the_layout_writes_yaml_reads_as_the_same_and_so_does_its_reader(d):
    written = emit(d)
    if written is None:  # a value the layout leaves to PyYAML
        return
    assert yaml.load(written, Loader=_Loader) == [d]
    assert parse(written) == d
    assert parse(written + "# end of cassette: 1 interaction\n") == d


@settings(max_examples=300, deadline=None)
@given(vcr_dicts())
def test_the_reader_reads_what_pyyaml_wrote_exactly_or_declines(d):
    written = yaml.dump([d], Dumper=_ReadableDumper, sort_keys=False, allow_unicode=True, width=120)
    back = parse(written)
    assert back is None or back == d


def test_a_recording_whose_batches_end_in_streams_stays_yaml(tmp_path):
    """PyYAML ends a dump holding a `|+` block (every SSE body ends in a blank line) with `...`: an append after
    it made the file invalid YAML until the final rewrite, and a kill -9 left it so."""
    path = tmp_path / "streams.yaml"
    writer = CassetteWriter(path, 1 << 20, Cassette())
    stream = Interaction("POST", "http://x/v1/chat/completions", {}, b'{"a":1}', 200, "OK",
                         {"Content-Type": ["text/event-stream"]}, b'data: {"a":1}\n\ndata: [DONE]\n\n', [14, 14], 5.0,
                         time.time(), xid="s-1")
    for _ in range(3):
        writer.write([stream])
    loaded = Cassette.load(path, recover_journal=False)
    assert len(loaded.interactions) == 3
    assert all(i.response_body == stream.response_body and i.chunks == [14, 14] for i in loaded.interactions)


def test_a_routed_experts_answer_is_scrubbed_around_its_blob_and_handed_back_whole_when_clean():
    import pybase64

    from harness.recording.scrub import Scrubber

    blob = pybase64.b64encode(bytes(range(256)) * 2048)  # 512 KiB of raw routing ids
    clean = b'{"choices":[{"routed_experts":"' + blob + b'","text":"hi"}]}'
    s = Scrubber()
    assert s.body(clean) is clean
    dirty = clean.replace(b'"hi"', b'"key sk-abcdefghijklmnopqrstuvwx"')
    out = s.body(dirty)
    assert b"sk-abcdef" not in out and b"<SCRUBBED>" in out and blob in out
