"""Answer matching for open-domain QA retrieval (Natural Questions, TriviaQA, CuratedTREC).

A retrieved passage is a hit when it contains one of the question's answers, and a question is
answered at k when any of its top-k passages is a hit: the "top-k retrieval accuracy" of DPR
(Karpukhin et al. 2020) and RocketQA. This module replicates DPR's ``has_answer``
(``dpr/data/qa_validation.py``) and its ``SimpleTokenizer`` (``dpr/utils/tokenizers.py``, from
DrQA), so numbers are comparable with the papers:

* ``"string"`` matching: text and answers are Unicode-normalised to NFD, split into tokens
  (runs of letters, digits and combining marks; every other non-space character is a token of
  its own), lower-cased, and the answer's token sequence must occur contiguously in the text's.
  Articles and punctuation are *not* removed: they are tokens like any other, so "The Beatles"
  does not match "Beatles were", "U.S." does not match "US", and "Washington D.C." does not
  match "Washington, D.C.". (The SQuAD-style stripping of articles and punctuation belongs to
  the reader's exact-match score, not to retrieval accuracy.) Matching is whole-token, so
  "Paris" does not match "Parisian", and scripts written without spaces are one token per run
  of letters ("東京" does not match "東京都").
* ``"regex"`` matching (CuratedTREC, whose answers are patterns): each NFD-normalised pattern is
  searched in the NFD-normalised text with the ``regex`` module's IGNORECASE, UNICODE and
  MULTILINE flags, as DPR does (``import regex as re``). A pattern that does not compile never
  matches, as in DPR, but is logged once rather than ignored silently.

Only the passage text is matched, never its title: DPR's ``check_answer`` takes ``doc[0]`` of its
``doc_id -> (text, title)`` table.

One deliberate departure from DPR: an answer with no tokens (``""``, whitespace) or an empty or
whitespace-only pattern never matches; in DPR it matches every passage.
"""

import logging
import unicodedata
from collections.abc import Callable, Sequence

import regex

logger = logging.getLogger(__name__)

MATCH_TYPES = ("string", "regex")
_REGEX_FLAGS = regex.IGNORECASE + regex.UNICODE + regex.MULTILINE
_warned_patterns: set[str] = set()  # invalid regex answers already logged


def _normalize(text: str) -> str:
    """NFD, as DPR: composed and decomposed spellings of an accented letter compare equal."""
    return unicodedata.normalize("NFD", text)


class SimpleTokenizer:
    """DrQA/DPR's regex tokenizer: runs of letters, digits and marks, or any single other non-space char."""

    ALPHA_NUM = r"[\p{L}\p{N}\p{M}]+"
    NON_WS = r"[^\p{Z}\p{C}]"

    def __init__(self) -> None:
        self._regexp = regex.compile(f"({self.ALPHA_NUM})|({self.NON_WS})", flags=_REGEX_FLAGS)

    def tokenize(self, text: str, uncased: bool = True) -> list[str]:
        """The tokens of ``text``, lower-cased when ``uncased`` (DPR matches uncased)."""
        tokens = [match.group() for match in self._regexp.finditer(text)]
        return [token.lower() for token in tokens] if uncased else tokens


_TOKENIZER = SimpleTokenizer()


class AnswerMatcher:
    """``matcher(text)`` says whether ``text`` contains one of ``answers``.

    The answers are normalised and tokenised (or compiled) once, so checking the hundreds of
    passages retrieved for a question does not redo that work per passage.
    """

    def __init__(self, answers: Sequence[str], match_type: str = "string"):
        if isinstance(answers, str):
            raise TypeError("answers must be a sequence of strings, not one string")
        if match_type not in MATCH_TYPES:
            raise ValueError(f"unknown match_type {match_type!r}; allowed: {', '.join(MATCH_TYPES)}")
        self.match_type = match_type
        if match_type == "string":
            tokenized = (_TOKENIZER.tokenize(_normalize(answer)) for answer in answers)
            self._token_answers = [tokens for tokens in tokenized if tokens]
        else:
            self._patterns = [p for p in (_compile(_normalize(a)) for a in answers if a.strip()) if p is not None]

    def __call__(self, text: str) -> bool:
        text = _normalize(text)
        if self.match_type == "regex":
            return any(pattern.search(text) is not None for pattern in self._patterns)
        if not self._token_answers:
            return False
        words = _TOKENIZER.tokenize(text)
        for answer in self._token_answers:
            size, first = len(answer), answer[0]
            for start in range(len(words) - size + 1):
                if words[start] == first and words[start : start + size] == answer:
                    return True
        return False


def _compile(pattern: str) -> regex.Pattern | None:
    """The compiled answer pattern, or None (logged once per pattern) when it is not a valid regex."""
    try:
        return regex.compile(pattern, flags=_REGEX_FLAGS)
    except Exception as err:  # noqa: BLE001 - as DPR: a bad pattern must not stop an evaluation
        if pattern not in _warned_patterns:
            _warned_patterns.add(pattern)
            logger.warning("regex answer %r does not compile (%s): it never matches", pattern, err)
        return None


def has_answer(answers: Sequence[str], text: str, match_type: str = "string") -> bool:
    """Whether ``text`` contains one of ``answers`` under ``match_type`` ("string" or "regex"), as DPR."""
    return AnswerMatcher(answers, match_type)(text)


def answer_judgements(
    run: dict[str, dict[str, float]] | dict[str, list[str]],
    answers: dict[str, list[str]],
    passage_text: Callable[[list[str]], list[str]],
    match_type: str = "string",
) -> dict[str, dict[str, int]]:
    """Qrels from answer matching: ``{qid: {docid: 1}}`` for each retrieved passage holding an answer.

    ``run`` maps each query to its retrieved doc ids (a ``{docid: score}`` dict or a list).
    ``passage_text(doc_ids)`` returns the texts (no titles) of those ids in order, one call per
    query so a large on-disk corpus can be read in one batch. Every query of ``answers`` gets an
    entry, ``{}`` when nothing it retrieved (or nothing at all) holds an answer, so the result can
    be scored by :func:`modeling_rq2.evaluation.metrics.evaluate_run` with misses counted; queries of the
    run without answers are ignored.
    """
    judgements: dict[str, dict[str, int]] = {}
    for qid, query_answers in answers.items():
        doc_ids = list(run.get(qid, ()))
        if not doc_ids:
            judgements[qid] = {}
            continue
        texts = passage_text(doc_ids)
        if len(texts) != len(doc_ids):
            raise ValueError(f"passage_text returned {len(texts)} texts for {len(doc_ids)} doc ids of query {qid!r}")
        matcher = AnswerMatcher(query_answers, match_type)
        judgements[qid] = {doc: 1 for doc, text in zip(doc_ids, texts, strict=True) if matcher(text)}
    return judgements
