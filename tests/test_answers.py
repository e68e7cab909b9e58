"""DPR-style answer matching: hand-worked cases of DPR's SimpleTokenizer/has_answer, qrels, QA files."""

import gzip
import logging
import unicodedata

import pytest

from modeling_rq2.data import DataFormatError
from modeling_rq2.data.dpr import read_qa_file
from modeling_rq2.evaluation.answers import AnswerMatcher, SimpleTokenizer, answer_judgements, has_answer
from modeling_rq2.evaluation.metrics import evaluate_run


def test_tokenizer_splits_punctuation_into_single_tokens_and_keeps_words_whole():
    tokenizer = SimpleTokenizer()
    assert tokenizer.tokenize("Washington, D.C.") == ["washington", ",", "d", ".", "c", "."]
    assert tokenizer.tokenize("Jay-Z's 1,000") == ["jay", "-", "z", "'", "s", "1", ",", "000"]
    assert tokenizer.tokenize("The U.S.", uncased=False) == ["The", "U", ".", "S", "."]
    assert tokenizer.tokenize(" \t\n") == []


def test_case_is_folded_on_both_sides():
    assert has_answer(["PARIS"], "paris is the capital of france")
    assert has_answer(["paris"], "PARIS IS THE CAPITAL")
    assert has_answer(["москва"], "МОСКВА — столица России")


def test_punctuation_is_a_token_not_stripped():
    # "U.S." -> u . s . ; "US" -> us
    assert has_answer(["U.S."], "the U.S. army")
    assert not has_answer(["US"], "the U.S. army")
    assert not has_answer(["U.S."], "the US army")
    # text: washington , d . c . ; answer: washington d . c . -> the comma breaks the sequence
    assert not has_answer(["Washington D.C."], "He moved to Washington, D.C., in 1990.")
    assert has_answer(["Washington, D.C."], "He moved to Washington, D.C., in 1990.")
    assert has_answer(["D.C."], "He moved to Washington, D.C., in 1990.")


def test_articles_are_kept():
    assert not has_answer(["The Beatles"], "Beatles were a band from Liverpool")
    assert has_answer(["Beatles"], "The Beatles were a band from Liverpool")
    assert has_answer(["The Beatles"], "Members of the Beatles")


def test_whole_tokens_only():
    assert not has_answer(["Paris"], "a Parisian cafe")
    assert not has_answer(["Parisian"], "a cafe in Paris")
    assert not has_answer(["York"], "born in Yorkshire")


def test_multi_token_answers_must_be_contiguous_and_in_order():
    assert has_answer(["New York City"], "she lives in new york city now")
    assert not has_answer(["New York City"], "New York's City Hall")
    assert not has_answer(["New York City"], "the city of New York")
    assert has_answer(["Rome", "New York City"], "she lives in New York City")  # any answer suffices


def test_composed_and_decomposed_accents_match_each_other():
    nfc, nfd = unicodedata.normalize("NFC", "Beyoncé"), unicodedata.normalize("NFD", "Beyoncé")
    assert nfc != nfd
    assert has_answer([nfd], f"{nfc} released Lemonade in 2016")
    assert has_answer([nfc], f"{nfd} released Lemonade in 2016")
    assert not has_answer(["Beyonce"], f"{nfc} released Lemonade")  # the accent is a mark inside the token


def test_non_latin_scripts():
    assert has_answer(["Лев Толстой"], "Роман написал Лев Толстой.")
    assert has_answer(["東京"], "首都 は 東京 です")
    assert not has_answer(["東京"], "東京都")  # no spaces: a run of letters is one token, as in DPR


def test_regex_answers():
    assert has_answer([r"19\d{2}"], "born in 1956 in Ohio", "regex")
    assert not has_answer([r"19\d{2}"], "born in 2001", "regex")
    assert has_answer([r"new\s+york"], "NEW  YORK", "regex")  # IGNORECASE
    assert has_answer([r"^Paris$"], "capital:\nParis\nof France", "regex")  # MULTILINE
    assert has_answer([r"Beyonc[eé]"], unicodedata.normalize("NFC", "Beyoncé sings"), "regex")


def test_invalid_regex_never_matches_and_is_logged_once(caplog):
    pattern = r"(unclosed test_answers"
    with caplog.at_level(logging.WARNING, logger="modeling_rq2.evaluation.answers"):
        assert not has_answer([pattern], "(unclosed test_answers", "regex")
        assert not has_answer([pattern], "anything", "regex")
        assert has_answer([pattern, r"any\w+"], "anything", "regex")  # the valid patterns still count
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and pattern in warnings[0]


def test_no_answers_and_empty_answers_never_match():
    for match_type in ("string", "regex"):
        assert not has_answer([], "some text", match_type)
        assert not has_answer(["", "   "], "some text", match_type)
    assert not has_answer(["Paris"], "", "string")


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="string, regex"):
        has_answer(["Paris"], "Paris", "exact")
    with pytest.raises(TypeError):
        AnswerMatcher("Paris")


def test_matcher_is_reusable_across_passages():
    matcher = AnswerMatcher(["Paris", "Paris, France"])
    assert [matcher(t) for t in ("Paris is big", "in Lyon", "Paris, France", "Parisian")] == [True, False, True, False]


def _texts(corpus, calls):
    def passage_text(doc_ids):
        calls.append(list(doc_ids))
        return [corpus[d] for d in doc_ids]

    return passage_text


CORPUS = {
    "d1": "Paris is the capital of France.",
    "d2": "Lyon is in France.",
    "d3": "The Eiffel Tower is in Paris.",
    "d4": "Berlin is the capital of Germany.",
}
ANSWERS = {"q1": ["Paris"], "q2": ["Berlin"], "q3": ["Madrid"], "q4": ["Rome"]}
EXPECTED = {"q1": {"d1": 1, "d3": 1}, "q2": {"d4": 1}, "q3": {}, "q4": {}}


def test_answer_judgements_from_a_scored_run():
    run = {
        "q1": {"d2": 3.0, "d3": 2.0, "d1": 1.0},
        "q2": {"d4": 0.5, "d1": 0.4},
        "q3": {"d1": 1.0},
        "q9": {"d1": 1.0},  # not in answers: ignored
    }  # q4 retrieved nothing
    calls = []
    qrels = answer_judgements(run, ANSWERS, _texts(CORPUS, calls))
    assert qrels == EXPECTED
    assert calls == [["d2", "d3", "d1"], ["d4", "d1"], ["d1"]]  # one batch per query, none for q9/q4
    _, per_query = evaluate_run(run, qrels, ["mrr@10"])
    assert [per_query[q]["mrr@10"] for q in ("q1", "q2", "q3", "q4")] == [0.5, 1.0, 0.0, 0.0]


def test_answer_judgements_from_ranked_lists():
    run = {"q1": ["d2", "d3", "d1"], "q2": ["d4", "d1"], "q3": ["d1"], "q4": []}
    assert answer_judgements(run, ANSWERS, _texts(CORPUS, [])) == EXPECTED


def test_answer_judgements_regex_and_wrong_text_count():
    run = {"q1": ["d1", "d4"]}
    regex_answers = {"q1": [r"capital of (France|Spain)"]}
    assert answer_judgements(run, regex_answers, _texts(CORPUS, []), "regex") == {"q1": {"d1": 1}}
    with pytest.raises(ValueError, match="q1"):
        answer_judgements(run, {"q1": ["Paris"]}, lambda ids: ["only one text"])


def test_read_qa_file(tmp_path):
    lines = [
        "who wrote war and peace\t['Leo Tolstoy', \"Tolstoy's\"]",
        "",
        '"The Mousetrap" was written by whom?\t["Agatha Christie"]',
        "où est la tour eiffel\t['Paris']",
    ]
    path = tmp_path / "tiny.qa.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = (
        ["0", "1", "2"],
        # csv.reader drops the quotes around "The Mousetrap", as in DPR
        ["who wrote war and peace", "The Mousetrap was written by whom?", "où est la tour eiffel"],
        [["Leo Tolstoy", "Tolstoy's"], ["Agatha Christie"], ["Paris"]],
    )
    assert read_qa_file(path) == expected
    gz = tmp_path / "tiny.qa.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read_qa_file(gz) == expected


@pytest.mark.parametrize(
    "bad, message",
    [
        (b"just a question", "2 tab-separated columns"),
        (b"q\t['a']\textra", "2 tab-separated columns"),
        (b"q\t['a'", "not a Python list literal"),
        (b"q\t__import__('os')", "not a Python list literal"),
        (b"q\t'Paris'", "not a list of strings"),
        (b"q\t[1, 2]", "not a list of strings"),
        (b"q\t[]", "no answers"),
        (b" \t['a']", "empty question"),
        (b"caf\xe9\t['a']", "not valid UTF-8"),
    ],
)
def test_read_qa_file_names_file_and_line_of_a_malformed_line(tmp_path, bad, message):
    path = tmp_path / "bad.qa.csv"
    path.write_bytes(b"good question\t['yes']\n\n" + bad + b"\n")
    with pytest.raises(DataFormatError, match=message) as error:
        read_qa_file(path)
    assert str(error.value).startswith(f"{path}:3: ")
