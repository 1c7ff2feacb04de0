"""Linking that fits RL traffic, on small hand-built captures whose every exchange is known: GRPO groups,
continuity on a session-linked turn, a tokens-in prompt that continues no head, messages-in turns that
continue only through their own answers, a history edit kept in its conversation."""

import orjson

from harness.captures import audit
from harness.recording.format import Cassette, Interaction

SYSTEM = {"role": "system", "content": "You are a calculator."}


def chat(messages, answer: str, prompt_ids, completion_ids, session=None, asked=True):
    """A messages-in turn; `asked`: it asked for the engine's ids (vLLM return_token_ids), as a client that
    stitches its next turn does."""
    headers = {"content-type": ["application/json"], **({"x-session-id": [session]} if session else {})}
    body = {"model": "m", "messages": messages, **({"return_token_ids": True} if asked else {})}
    answer_body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                "finish_reason": "stop", "token_ids": completion_ids}],
                   "prompt_token_ids": prompt_ids, "usage": {"prompt_tokens": len(prompt_ids)}}
    return Interaction("POST", "http://h/v1/chat/completions", headers, orjson.dumps(body), 200, "OK",
                       {"content-type": ["application/json"]}, orjson.dumps(answer_body))


def generate(prompt_ids, completion_ids, session=None):
    """A tokens-in turn (vLLM /inference/v1/generate)."""
    headers = {"content-type": ["application/json"], **({"x-session-id": [session]} if session else {})}
    body = {"model": "m", "token_ids": prompt_ids, "sampling_params": {"max_tokens": 8}}
    answer_body = {"choices": [{"index": 0, "token_ids": completion_ids, "finish_reason": "stop"}]}
    return Interaction("POST", "http://h/inference/v1/generate", headers, orjson.dumps(body), 200, "OK",
                       {"content-type": ["application/json"]}, orjson.dumps(answer_body))


def kinds(report):
    return sorted((a.conversation, a.kind) for a in report.anomalies)


def test_rollouts_of_a_group_are_a_group_and_stay_apart_with_the_same_answer():
    """Four rollouts of one question, two of them answered alike (the same head): each stays its own
    conversation, all four share a group, and no anomaly is raised."""
    user = {"role": "user", "content": "2+2?"}
    p1 = [1, 2, 3, 4, 5]
    answers = [[10, 11, 12, 99], [10, 11, 12, 99], [20, 21, 22, 99], [30, 31, 32, 99]]
    inters = [chat([SYSTEM, user], "x", p1, a) for a in answers]
    for k, a in enumerate(answers):  # turn 2 of each, stitched: head + a bridge of its own
        inters.append(generate(p1 + a + [50 + k, 51], [60 + k, 99]))
    report = audit(Cassette(inters, {}))
    assert report.anomalies == []
    assert sorted(c.exchanges for c in report.conversations) == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert {c.group for c in report.conversations} == {0}
    assert all(a["group"] == 0 for a in report.to_dict()["anomalies"])


def test_a_session_linked_tokens_in_turn_is_checked_for_continuity():
    """The header ties the turn to its conversation; its prompt drifts from the head: continuity_break."""
    user = {"role": "user", "content": "hi"}
    inters = [chat([SYSTEM, user], "a", [1, 2, 3], [7, 8, 99], session="s1"),
              generate([1, 2, 3, 7, 8, 100, 5, 6], [9, 99], session="s1")]  # 99 re-tokenized as 100
    report = audit(Cassette(inters, {}))
    assert [c.exchanges for c in report.conversations] == [[0, 1]]
    assert kinds(report) == [(0, "continuity_break")]
    assert "position 5" in report.anomalies[0].detail


def test_a_prompt_that_continues_no_head_is_an_orphan_kept_in_its_rollout():
    """A system prompt re-rendered (a timestamp) before turn 2: the prompt starts with no recorded head, but
    holds turn 1's completion, so it stays in that rollout, flagged orphan_tokens_in with where it leaves."""
    user = {"role": "user", "content": "hi"}
    inters = [chat([SYSTEM, user], "a", [1, 2, 3, 4], [7, 8, 9, 10, 99]),
              generate([1, 2, 33, 4, 7, 8, 9, 10, 99, 5], [11, 12, 13, 14, 99]),
              generate([1, 2, 44, 4, 7, 8, 9, 10, 99, 5, 11, 12, 13, 14, 99, 6], [15, 99])]
    report = audit(Cassette(inters, {}))
    assert [c.exchanges for c in report.conversations] == [[0, 1, 2]]
    assert kinds(report) == [(0, "orphan_tokens_in"), (0, "orphan_tokens_in")]
    assert "differs at position 2" in report.anomalies[0].detail and "position 4" in report.anomalies[0].detail


def test_a_new_first_turn_of_tokens_is_no_orphan():
    inters = [generate([1, 2, 3], [4, 5, 6, 7, 99]), generate([1, 2, 8], [4, 5, 6, 7, 99])]
    report = audit(Cassette(inters, {}))
    assert report.anomalies == [] and len(report.conversations) == 2


def test_messages_in_continues_only_through_its_own_answer():
    """Two rollouts of a group share system + user; each turn 2 sends back its own answer. Each joins the
    conversation whose answer it carries, not the most recent one of the group."""
    user = {"role": "user", "content": "2+2?"}
    a = chat([SYSTEM, user], "four", [1, 2], [5, 99])
    b = chat([SYSTEM, user], "4", [1, 2], [6, 99])
    tool = {"role": "user", "content": "sure?"}
    a2 = chat([SYSTEM, user, {"role": "assistant", "content": "four"}, tool], "yes", [1, 2, 5, 99, 7], [8, 99])
    b2 = chat([SYSTEM, user, {"role": "assistant", "content": " 4 "}, tool], "yes", [1, 2, 6, 99, 7], [8, 99])
    report = audit(Cassette([a, b, a2, b2], {}))
    assert sorted(c.exchanges for c in report.conversations) == [[0, 2], [1, 3]]  # by their engine ids
    assert kinds(report) == [(0, "silent_mito"), (1, "silent_mito")]  # they asked for ids, then fell back
    # a client that asks for no engine ids: the messages alone link each turn, still to its own rollout
    def bare(i):
        req = orjson.loads(i.request_body)
        req.pop("return_token_ids")
        msg = orjson.loads(i.response_body)["choices"][0]["message"]
        return Interaction(i.method, i.uri, i.request_headers, orjson.dumps(req), 200, "OK", i.response_headers,
                           orjson.dumps({"choices": [{"index": 0, "message": msg, "finish_reason": "stop"}]}))

    report = audit(Cassette([bare(i) for i in (a, b, a2, b2)], {}))
    assert sorted(c.exchanges for c in report.conversations) == [[0, 2], [1, 3]] and report.anomalies == []
    assert [t.link for c in report.conversations for t in c.turns] == ["new", "messages", "new", "messages"]


def test_a_history_edit_stays_in_its_conversation_as_a_fallback():
    """Turn 3 changes an earlier message (the tool result of turn 2): the client falls back to messages-in;
    the prefix up to the edit holds the rollout's own answer, so the turn stays, linked history_edited,
    counted as a fallback and raising no anomaly."""
    user = {"role": "user", "content": "2+2?"}
    t1 = chat([SYSTEM, user], "four", [1, 2], [5, 99], asked=False)
    m2 = [SYSTEM, user, {"role": "assistant", "content": "four"}, {"role": "user", "content": "sure?"}]
    t2 = chat(m2, "yes", [1, 2, 5, 99, 7], [8, 99], asked=False)
    m3 = [*m2[:3], {"role": "user", "content": "certain?"}, {"role": "assistant", "content": "yes"},
          {"role": "user", "content": "ok"}]
    t3 = chat(m3, "ok", [1, 2, 5, 99, 70, 8, 99, 9], [3, 99], asked=False)
    other = chat([SYSTEM, {"role": "user", "content": "3+3?"}], "six", [1, 4], [6, 99], asked=False)
    report = audit(Cassette([t1, other, t2, t3], {}))
    assert sorted(c.exchanges for c in report.conversations) == [[0, 2, 3], [1]]
    conv = next(c for c in report.conversations if c.id == 0)
    assert [t.link for t in conv.turns] == ["new", "tokens", "history_edited"]
    assert report.anomalies == []
    assert report.fallbacks() == {"history edited": 1, "the client did not ask for engine ids": 1}


def test_a_history_edit_under_a_session_header_is_told_too():
    user = {"role": "user", "content": "hi"}
    t1 = chat([SYSTEM, user], "a", [1, 2], [5, 99], session="s")
    t2 = chat([SYSTEM, {"role": "user", "content": "hi!"}, {"role": "assistant", "content": "a"},
               {"role": "user", "content": "more"}], "b", [1, 3, 5, 99, 7], [8, 99], session="s")
    report = audit(Cassette([t1, t2], {}))
    assert [[t.link for t in c.turns] for c in report.conversations] == [["new", "history_edited"]]
    assert report.anomalies == []
