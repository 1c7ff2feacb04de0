from harness.tokenizer import build_tokenizer, chat_template, load_tokenizer, render_ids

from .conftest import TOOLS, tool_msg


def test_real_qwen_vocabulary(tokenizer):
    assert tokenizer.encode("Hello world") == [9707, 1879]
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [151643, 151644, 151645]
    assert tokenizer.eos_token == "<|im_end|>"


def test_chatml_renders_roles_tools_and_grouped_tool_results(tokenizer):
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}]},
            tool_msg("r1"), tool_msg("r2", 1), {"role": "user", "content": "more"}]
    text = tokenizer.apply_chat_template(msgs, tools=TOOLS, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nsys\n\n# Tools\n")
    assert '"name": "lookup"' in text and "<tools>" in text
    assert '<|im_start|>assistant\n<tool_call>\n{"name": "lookup", "arguments": {"q": "x"}}\n</tool_call><|im_end|>\n' in text
    # consecutive tool results share one user turn
    assert "<|im_start|>user\n<tool_response>\nr1\n</tool_response>\n<tool_response>\nr2\n</tool_response><|im_end|>\n" in text
    assert text.endswith("<|im_start|>user\nmore<|im_end|>\n<|im_start|>assistant\n")
    assert "None" not in text  # a null content renders as nothing, as Dynamo's renderer does


def test_generation_prompt_ids(tokenizer):
    ids = render_ids(tokenizer, [{"role": "user", "content": "Hello"}], add_generation_prompt=True)
    assert ids == [151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198]  # as real vLLM's /tokenize


def test_thinking_template_drops_earlier_think_blocks():
    tok = load_tokenizer(template="thinking")
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nans"},
            {"role": "user", "content": "q2"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert "hmm" not in text and "<|im_start|>assistant\nans<|im_end|>" in text
    off = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    # the plain ChatML template keeps history verbatim
    plain = load_tokenizer().apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert "<think>\nhmm\n</think>" in plain


def test_build_writes_a_loadable_directory(tmp_path):
    out = build_tokenizer(tmp_path / "tok", "thinking")
    tok = load_tokenizer(str(out))
    assert tok.encode("Hello world") == [9707, 1879]
    assert tok.chat_template == chat_template("thinking")


def test_token_table_shows_every_id_as_the_tokenizer_does(tokenizer, tmp_path, monkeypatch):
    import harness.tokenizer as T

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    monkeypatch.setattr(T, "_tables", {})
    src = T.default_tokenizer_dir()
    table = T.token_table(src)
    assert len(table) == len(tokenizer)
    ids = list(range(len(table)))
    assert table.pieces(ids) == tokenizer.batch_decode([[i] for i in ids])
    text = "héllo wörld 你好 🎉 <|im_start|>user\n"
    ids = tokenizer.encode(text)
    assert table.decode(ids) == tokenizer.decode(ids) == text
    # a value that is no id of the vocabulary shows as U+FFFD, never raises
    assert table.pieces([-1, len(table), 10**30, "7", 3.0, True, None]) == ["\ufffd"] * 7
    # the table survives the process: a second read comes from the cache files, not the tokenizer
    (cached,) = list((tmp_path / "tables").iterdir())
    assert sorted(p.name for p in cached.iterdir()) == ["offsets.npy", "pieces.bin"]
    monkeypatch.setattr(T, "_tables", {})
    monkeypatch.setattr(T, "table_from_tokenizer_json", lambda path: (_ for _ in ()).throw(AssertionError("rebuilt")))
    assert T.token_table(src).pieces(ids) == tokenizer.batch_decode([[i] for i in ids])


def test_token_table_without_a_writable_cache_still_answers(tmp_path, monkeypatch):
    import harness.tokenizer as T

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    src = T.default_tokenizer_dir()
    monkeypatch.setenv("HARNESS_CACHE", str(blocker))
    monkeypatch.setattr(T, "_tables", {})
    assert T.token_table(src).decode([9707, 1879]) == "Hello world"
