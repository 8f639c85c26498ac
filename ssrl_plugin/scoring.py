r"""Response parsing and scoring for the Spatial-SSRL pretext tasks (pure Python, stdlib only).

``score(response, ground_truth, task_hint=None, **options)`` returns, for ANY input, the same six keys, each a
finite float:

* ``overall``: ``(1 - format_weight) * accuracy + format_weight * format - length_penalty - repetition_penalty``.
  In [0, 1] with the default options (both penalties off); never below ``-(length_penalty + repetition_penalty)``
  weights (>= -2) when they are on.
* ``accuracy``: 1.0 right, 0.0 wrong / missing / hedged; a fraction with ``partial_credit``.
* ``format``: 1.0 when the paper's format check passes, else 0.0.
* ``hedged``: 1.0 when the response hedges (disagreeing boxed answers, several options in one box, more than 16
  ``\boxed``), else 0.0. A diagnostic: it never adds reward.
* ``length_penalty``: the amount subtracted for an overlong response (0.0 unless ``max_response_chars``).
* ``repetition_penalty``: the amount subtracted for a repetitive response (0.0 unless ``repetition_penalty``).

Bad input (``None``, a non-string, a ground truth that cannot be parsed) scores all zeros and never raises.
Invalid option VALUES (e.g. ``format_weight=2``) raise ``ValueError``: that is a configuration error, and failing
at the first batch beats training on a silently wrong reward. Unknown option names are ignored (a warning once),
because the trainers pass extra keyword arguments of their own.

What passes the format check (``format``), exactly the paper's rule
--------------------------------------------------------------------
The paper removes whitespace around ``<``, ``>`` and ``/`` and then requires
``re.fullmatch(r"<think>.*</think>.*\\boxed\{.*\}.*", response, re.DOTALL)``. Equivalently, after that
normalisation the response must start with ``<think>``, contain ``</think>`` after it, a literal ``\boxed{``
after that, and a ``}`` after that; anything may follow. ``< think >`` and ``</ think >`` therefore pass,
``\boxed {A}`` (space before the brace) does not, text before ``<think>`` does not. The tags are options
(``think_open``, ``think_close``). The check is done with linear-time searches and never builds the normalised
string: the paper's own regexes take 2 s on 16 KB of spaces (quadratic) and 2.7 s on 16 KB of repeated
``</think>``/``\boxed{`` (backtracking).

Which boxed answer counts (``accuracy``)
----------------------------------------
* Every ``\boxed`` followed by optional whitespace and ``{`` opens an answer that runs to the MATCHING ``}``
  (nested braces are counted, so ``\boxed{\text{B}}`` is ``\text{B}``). ``\boxed {B}`` is accepted here.
  An empty ``\boxed{}`` is ignored (models quote the instruction). ``\boxed`` without a brace is not an answer.
* A box that does not close within 256 characters (or at all) is an invalid answer.
* The LAST boxed answer is the answer. Every other boxed answer must canonicalise to the same answer, else
  the response hedges and scores 0. More than 16 ``\boxed`` in one response also scores 0 (degenerate output).
* Scanning is linear: one ``str.count``, then at most 16 boxes of at most 256 characters each.

Equivalent spellings accepted (the kind of answer is read from the ground truth, not from the task name)
---------------------------------------------------------------------------------------------------------
Every answer: NFKC first (full-width ``Ｂ``, ``０－２``, ``（Ｂ）``), en/em dashes and minus signs become ``-``;
``\text{}``, ``\textbf{}``, ``\mathrm{}`` (and other ``\text..``/``\math..``), nested ``\boxed{}``, ``$``,
``\(``, ``\)``, ``\[``, ``\]``, ``\left``/``\right`` and braces are dropped; LaTeX spaces become spaces; any other
LaTeX command makes the answer invalid. A leading ``Option``/``Choice``/``Answer``/``Final answer`` (with
optional ``is`` or ``:``) and trailing ``.`` are dropped.

* Letter answers (crop, position; ground truth ``A``..): ``B``, ``(B)``, ``[B]``, ``B.``, ``B)``, ``B:``,
  ``Option B``, and a lower-case letter alone (``b``, ``(b)``). A letter followed by text (``B. Front``,
  ``(B) Front``, ``B: Front``) passes only if the text names option B: when the options are known (position
  ground truths carry them) the text must equal ``options[B]`` up to case, punctuation and word order, so
  ``B. Back`` when B is Front is wrong; when they are not known (crop, legacy plain ``A``) the text must be a
  short phrase of words that names no other option letter and no hedge word (or/and/either/maybe/...).
  With known options the option text alone (``Front``) passes when it matches exactly one option.
* Permutations (shuffle ``0-2-3-1``, depth ``3-1-2``) and other number lists (flip ``3-0``): the numbers joined by
  ONE kind of separator, ``-``, ``,`` or whitespace, with optional surrounding ``[]`` or ``()``:
  ``0-2-3-1``, ``0, 2, 3, 1``, ``[0,2,3,1]``, ``(0 2 3 1)``. ``0231`` and mixed separators do not pass.
* Anything else (future tasks with free-text answers): equal word sequences, ignoring case and punctuation.

Never rewarded: ``A or B``, ``A/B``, ``A, B``, ``AB``, every option listed, ``0-2-3-1 or 0-3-2-1``, several boxed
answers that disagree, a letter whose text names another option.

Ground truth
------------
Our builder writes compact JSON ``{"answer":"B","task":"crop"}`` (plus ``"options":{"A":"Left",...}`` for
position). Plain answers of the released Spatial-SSRL-81k data (``0-2-3-1``, ``3-0``, ``3-1-2``, ``A``) work too;
a mapping with ``answer`` (or verl's ``{"ground_truth": ...}``) as well. The task name is the JSON ``task``, else
``task_hint`` when it names one of TASKS (``spatial_ssrl/crop`` or ``crop``), else inferred from the answer's shape
(a permutation from 0: shuffle, from 1: depth, two numbers: flip, a letter: ``crop_or_position``, since both
answer with a letter). ``task_rows`` and ``split_rows`` (integers, written by ``ssrl build``: the rows of this
task and of the whole split) come back as ``Result.split_weight = split_rows / task_rows``, which the EasyR1
reward uses to keep per-task accuracies exact when metric lists are pooled across batches.

Options (all off by default, so the default reproduces the paper's 0.9/0.1 reward)
---------------------------------------------------------------------------------
``format_weight`` (0.1), ``partial_credit`` (permutations only: the fraction of positions right, and only when the
answer is a valid permutation of the same items), ``require_format`` (no accuracy credit without the format),
``max_response_chars`` with ``length_buffer_chars`` (linear ramp before the limit, 0 = a step) and
``length_penalty`` (the weight, 0.5), ``repetition_penalty`` (the weight; 0 = off) with ``repetition_ngram`` (4)
and ``repetition_threshold`` (0.5): the word n-gram repetition ratio ``1 - unique/total`` over the last 20,000
characters, penalised linearly from the threshold (0) to 1 (the full weight); fewer than 16 n-grams never count.
``think_open``/``think_close`` set the tags.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache

__all__ = [
    "KEYS", "TASKS", "Options", "Result", "Truth", "canonical_answer", "evaluate", "extract_boxed", "format_ok",
    "make_options", "parse_truth", "repetition_ratio", "score",
]

TASKS = ("shuffle", "flip", "crop", "depth", "position", "temporal_order", "camera_motion", "cross_view")
KEYS = ("overall", "accuracy", "format", "hedged", "length_penalty", "repetition_penalty")

MAX_BOXED = 16  # more \boxed than this in one response is degenerate output, never an answer
MAX_CONTENT = 256  # a boxed answer longer than this is not one of ours (the longest, 16 labels, is ~40 chars)
REPETITION_WINDOW = 20_000  # loops sit at the end of a runaway response; bounding the window bounds the time
MIN_NGRAMS = 16
HEDGE_WORDS = frozenset({"or", "and", "either", "maybe", "possibly", "perhaps", "probably", "not", "unsure", "both"})

# Keyword arguments the trainers pass on their own (verl's reward loop, EasyR1 forks): ignored without a warning.
PASSTHROUGH = frozenset({
    "reward_router_address", "reward_model_tokenizer", "model_name", "sampling_params", "token_ids",
    "resp_lengths", "ref_resp_lengths", "response_length", "data_source", "extra_info", "per_task_keys",
})


# ----------------------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class Options:
    format_weight: float = 0.1
    partial_credit: bool = False
    require_format: bool = False
    max_response_chars: int = 0  # 0 = no length penalty
    length_buffer_chars: int = 0
    length_penalty: float = 0.5
    repetition_penalty: float = 0.0  # 0 = off
    repetition_ngram: int = 4
    repetition_threshold: float = 0.5
    think_open: str = "<think>"
    think_close: str = "</think>"


OPTION_NAMES = frozenset(f.name for f in fields(Options))
_options_cache: dict[tuple, Options] = {}
_warned: set[str] = set()


def _to_bool(name: str, v) -> bool:
    if isinstance(v, str) and v.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off", ""):
        return v.strip().lower() in ("true", "1", "yes", "on")
    if isinstance(v, (bool, int, float)) and v in (0, 1):
        return bool(v)
    raise ValueError(f"option {name} must be a boolean, got {v!r}")


def _to_float(name: str, v, lo: float, hi: float) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"option {name} must be a number, got {v!r}") from None
    if not (lo <= f <= hi):  # also rejects NaN
        raise ValueError(f"option {name} must be in [{lo}, {hi}], got {v!r}")
    return f


def _to_int(name: str, v, lo: int) -> int:
    if v is None or (isinstance(v, str) and v.strip().lower() in ("", "none", "null")):
        return 0
    f = _to_float(name, v, -math.inf, math.inf)
    if not math.isfinite(f) or f != int(f) or f < lo:
        raise ValueError(f"option {name} must be an integer >= {lo}, got {v!r}")
    return int(f)


def _build_options(kw: dict) -> Options:
    o = Options()
    values = {}
    for name, v in kw.items():
        if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalars from a config
            v = v.item()
        if name in ("partial_credit", "require_format"):
            values[name] = _to_bool(name, v)
        elif name in ("format_weight", "length_penalty", "repetition_penalty", "repetition_threshold"):
            values[name] = _to_float(name, v, 0.0, 1.0 if name != "repetition_threshold" else 0.99)
        elif name in ("max_response_chars", "length_buffer_chars"):
            values[name] = _to_int(name, v, 0)
        elif name == "repetition_ngram":
            values[name] = _to_int(name, v, 1) or o.repetition_ngram
        elif name in ("think_open", "think_close"):
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"option {name} must be a non-empty string, got {v!r}")
            values[name] = _normalise_tag(v)
    return Options(**{**o.__dict__, **values})


def make_options(**kwargs) -> Options:
    """Options from trainer keyword arguments; validated once per distinct setting and cached."""
    kw = {}
    for name, v in kwargs.items():
        if name in OPTION_NAMES:
            kw[name] = v
        elif name not in PASSTHROUGH and name not in _warned:
            _warned.add(name)
            warnings.warn(f"spatial_ssrl reward: unknown option {name!r} ignored", stacklevel=2)
    try:
        key = tuple(sorted(kw.items()))
        hash(key)
    except TypeError:  # an unhashable value: validate without caching (it will most likely raise)
        return _build_options(kw)
    opts = _options_cache.get(key)
    if opts is None:
        if len(_options_cache) >= 256:  # a trainer uses one setting; only sweeps and fuzzers create many
            _options_cache.clear()
        opts = _options_cache[key] = _build_options(kw)
    return opts


DEFAULT_OPTIONS = Options()


# ------------------------------------------------------------------------------------------------ format check
_SPECIAL = "<>/"


def _normalise_tag(tag: str) -> str:
    # The paper's normalisation applied to the tag itself, so "< think >" configures the same tag as "<think>".
    return re.sub(r"\s*([<>/])\s*", r"\1", tag)  # tags are short: no risk of quadratic time here


@lru_cache(maxsize=64)
def _tag_regex(tag: str, anchored: bool) -> re.Pattern:
    """A raw-text pattern that matches exactly what the paper's normalisation turns into `tag`.

    Whitespace may sit on either side of every <, > or / in the tag. No leading \\s* for searches: a leading
    \\s* would be retried at every position of a whitespace run (quadratic); at the anchored start it is safe.
    """
    parts = []
    for ch in _normalise_tag(tag):
        if ch in _SPECIAL:
            if not parts or parts[-1] != r"\s*":
                parts.append(r"\s*")
            parts += [re.escape(ch), r"\s*"]
        else:
            parts.append(re.escape(ch))
    while parts and parts[-1] == r"\s*":  # trailing whitespace is irrelevant to what follows
        parts.pop()
    if not anchored:
        while parts and parts[0] == r"\s*":
            parts.pop(0)
    return re.compile("".join(parts))


def format_ok(response: str, think_open: str = "<think>", think_close: str = "</think>") -> bool:
    """The paper's format rule (see the module docstring) in linear time on the raw response."""
    m = _tag_regex(think_open, True).match(response)
    if m is None:
        return False
    c = _tag_regex(think_close, False).search(response, m.end())
    if c is None:
        return False
    q = response.find("\\boxed{", c.end())
    return q >= 0 and response.find("}", q + 7) >= 0


# ------------------------------------------------------------------------------------------- boxed extraction
_WS = re.compile(r"\s*")
_BRACES = re.compile(r"[{}]")


def _close_brace(s: str, open_at: int) -> int:
    """Index of the `}` matching the `{` at open_at, searched within MAX_CONTENT characters; -1 if none."""
    end = min(len(s), open_at + 1 + MAX_CONTENT + 1)
    close = s.find("}", open_at + 1, end)
    if close < 0:
        return -1
    if s.find("{", open_at + 1, close) < 0:  # the usual case: no nesting
        return close
    depth = 0
    for m in _BRACES.finditer(s, open_at, end):  # at most MAX_CONTENT iterations
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            return m.start()
    return -1


def extract_boxed(response: str) -> list[str | None] | None:
    """All non-empty boxed answers in order (None for one that never closes); None when there are too many."""
    if response.count("\\boxed") > MAX_BOXED:
        return None
    out: list[str | None] = []
    i = response.find("\\boxed")
    while i >= 0:
        j = _WS.match(response, i + 6).end()
        if j < len(response) and response[j] == "{":
            k = _close_brace(response, j)
            if k < 0:
                out.append(None)
            elif response[j + 1:k].strip():
                out.append(response[j + 1:k])
        i = response.find("\\boxed", i + 6)
    return out


# --------------------------------------------------------------------------------------------- ground truth
@dataclass(frozen=True)
class Truth:
    task: str  # task name used for per-task metrics
    kind: str  # "choice" | "perm" | "list" | "text"
    answer: str  # the canonical answer string
    values: tuple = ()  # ints for perm/list
    options: tuple = ()  # ((letter, text key), ...) when the option texts are known
    split_weight: float = 0.0  # split_rows / task_rows from the ground truth; 0 when it does not say
    named: bool = False  # the task comes from the ground truth or the hint, not from the answer's shape


CHOICE_TASK = "crop_or_position"  # a plain letter: the released data answers crop and position alike


def _split_weight(task_rows, split_rows) -> float:
    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (task_rows, split_rows))
    return split_rows / task_rows if ok and 0 < task_rows <= split_rows else 0.0


_TASK_NAME = re.compile(r"[a-z0-9_]{1,32}")
_GT_LETTER = re.compile(r"[A-Z]")


def _task_name(name) -> str:
    if not isinstance(name, str):
        return ""
    name = name.strip().lower().rsplit("/", 1)[-1].replace("-", "_")
    return name if _TASK_NAME.fullmatch(name) else ""


def _text_key(text: str) -> tuple:
    return tuple(re.findall(r"[a-z0-9]+", text.lower()))


def _make_truth(answer, task: str, options, hint: str, weight: float = 0.0) -> Truth | None:
    if isinstance(answer, bool) or not isinstance(answer, (str, int)):
        return None
    answer = str(answer).strip()
    if not answer or len(answer) > 1000:
        return None
    opts = ()
    if isinstance(options, Mapping):
        opts = tuple(sorted((k.strip(), tuple(sorted(_text_key(v)))) for k, v in options.items()
                            if isinstance(k, str) and isinstance(v, str) and _GT_LETTER.fullmatch(k.strip())))
    if _GT_LETTER.fullmatch(answer):
        kind, values, inferred = "choice", (), CHOICE_TASK
    else:
        values = _numbers(_clean(answer) or "")
        if values is None:
            kind, values, inferred = "text", (), "unknown"
        elif len(values) >= 3 and sorted(values) == list(range(min(values), min(values) + len(values))) \
                and min(values) in (0, 1):
            kind, inferred = "perm", ("shuffle" if min(values) == 0 else "depth")
        else:
            kind, inferred = "list", ("flip" if len(values) == 2 else "unknown")
    named = _task_name(task) or hint
    return Truth(task=named or inferred, kind=kind, answer=answer, values=values, options=opts,
                 split_weight=weight, named=bool(named))


@lru_cache(maxsize=8192)
def _truth_from_short_str(gt: str, hint: str) -> Truth | None:
    return _parse_truth_str(gt, hint)


def _truth_from_str(gt: str, hint: str) -> Truth | None:
    # The n rollouts of a prompt share one ground truth: cache the parse, but only of short strings (bounded memory).
    return _truth_from_short_str(gt, hint) if len(gt) <= 2048 else _parse_truth_str(gt, hint)


def _parse_truth_str(gt: str, hint: str) -> Truth | None:
    s = gt.strip()
    if s.startswith("{"):
        try:
            obj = json.loads(s)
        except (ValueError, RecursionError):
            return None
        return _truth_from_mapping(obj, hint) if isinstance(obj, Mapping) else None
    return _make_truth(s, "", None, hint)


def _truth_from_mapping(obj: Mapping, hint: str, depth: int = 0) -> Truth | None:
    if "answer" in obj:
        return _make_truth(obj.get("answer"), obj.get("task"), obj.get("options"), hint,
                           _split_weight(obj.get("task_rows"), obj.get("split_rows")))
    inner = obj.get("ground_truth")  # verl's reward_model column
    if depth < 2 and isinstance(inner, str):
        return _truth_from_str(inner, hint)
    if depth < 2 and isinstance(inner, Mapping):
        return _truth_from_mapping(inner, hint, depth + 1)
    return None


def parse_truth(ground_truth, task_hint=None) -> Truth | None:
    """The ground truth as our builder writes it, a legacy plain answer, or a mapping; None if unusable.

    The hint (e.g. verl's data_source ``spatial_ssrl/crop``) names the task only when it is one of TASKS and the
    ground truth does not name it: a data_source such as ``Spatial-SSRL-81k`` says nothing about the task.
    """
    hint = _task_name(task_hint)
    hint = hint if hint in TASKS else ""
    try:
        if isinstance(ground_truth, bytes):
            ground_truth = ground_truth.decode("utf-8", "replace")
        if isinstance(ground_truth, str):
            return _truth_from_str(ground_truth, hint) if len(ground_truth) <= 100_000 else None
        if isinstance(ground_truth, Mapping):
            return _truth_from_mapping(ground_truth, hint)
    except (TypeError, ValueError, AttributeError, RecursionError):
        pass
    return None


# ---------------------------------------------------------------------------------------- canonicalisation
_DASHES = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63"})
_LATEX_WRAP = re.compile(r"\\(?:text[a-z]*|math[a-z]*|boxed|fbox|operatorname|bf|rm|it)(?![a-zA-Z])")
_LATEX_SPACE = re.compile(r"\\(?:[,;:! ]|quad|qquad)(?![a-zA-Z])")
_LATEX_DELIM = re.compile(r"\\(?:left|right)(?![a-zA-Z])|\\[()\[\]{}]")
_PREFIX = re.compile(r"(?:the\s+)?(?:final\s+)?(?:answer|option|choice)(?![a-z])\s*(?:is(?![a-z]))?\s*[:：]?\s*",
                     re.IGNORECASE)
_LETTER = re.compile(r"[(\[]?\s*([A-Za-z])\s*[)\]]?(?![A-Za-z])\s*[.:)\-]?\s*(.*)", re.DOTALL)
_PHRASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 '\-]{0,59}")
_SEP = re.compile(r"\s*([-,])\s*")
_SPACES = re.compile(r"\s+")
_NUM_LISTS = (re.compile(r"[0-9]+(?:-[0-9]+)*"), re.compile(r"[0-9]+(?:,[0-9]+)*"), re.compile(r"[0-9]+(?: [0-9]+)*"))


def _clean(content: str) -> str | None:
    """Strip the notation around an answer; None when LaTeX we do not understand remains."""
    c = content
    if not c.isascii():
        c = unicodedata.normalize("NFKC", c).translate(_DASHES)
    if "\\" in c:
        c = _LATEX_WRAP.sub("", c)
        c = _LATEX_SPACE.sub(" ", c)
        c = _LATEX_DELIM.sub("", c)
        if "\\" in c:
            return None
    c = c.replace("$", "").replace("{", "").replace("}", "").replace("~", " ").strip()
    m = _PREFIX.match(c)
    if m:
        c = c[m.end():]
    return c.rstrip(" .。").strip()


def _numbers(c: str) -> tuple | None:
    if c[:1] in "([" and c[-1:] in ")]":
        c = c[1:-1].strip()
    c = _SPACES.sub(" ", _SEP.sub(r"\1", c))
    if any(p.fullmatch(c) for p in _NUM_LISTS):
        return tuple(int(x) for x in re.findall(r"[0-9]+", c))
    return None


def _letter(c: str, truth: Truth):
    letters = {k for k, _ in truth.options} or {"A", "B", "C", "D", truth.answer}
    m = _LETTER.fullmatch(c)
    if m:
        letter, rest = m.group(1), m.group(2).strip().strip("()[]").strip().rstrip(".").strip()
        if not rest:
            return letter.upper() if letter.upper() in letters else None
        if letter.islower() or letter not in letters:
            return None
        if truth.options:  # the text must name this very option
            return letter if dict(truth.options)[letter] == tuple(sorted(_text_key(rest))) else None
        if not _PHRASE.fullmatch(rest):  # unknown options: a short phrase that names no other option
            return None
        words = re.findall(r"[A-Za-z]+", rest)
        if any(w in letters for w in words) or any(w.lower() in HEDGE_WORDS for w in words):
            return None
        return letter
    if truth.options:  # the option text alone, when it names exactly one option
        key = tuple(sorted(_text_key(c)))
        hits = [k for k, v in truth.options if v == key and key]
        return hits[0] if len(hits) == 1 else None
    return None


def canonical_answer(content: str | None, truth: Truth):
    """A boxed answer in the ground truth's canonical form (letter, tuple of ints, word tuple) or None."""
    if content is None or len(content) > MAX_CONTENT:
        return None
    c = _clean(content)
    if not c:
        return None
    if truth.kind == "choice":
        return _letter(c, truth)
    if truth.kind in ("perm", "list"):
        return _numbers(c)
    key = _text_key(c)
    return key or None


def _looks_hedged(content: str | None, truth: Truth) -> bool:
    c = _clean(content or "") or ""
    if re.search(r"(?i)\bor\b|/|\|", c):
        return True
    if truth.kind == "choice":
        return len(set(re.findall(r"(?<![A-Za-z])[A-D](?![A-Za-z])", c))) >= 2
    return False


# -------------------------------------------------------------------------------------------------- penalties
def repetition_ratio(text: str, n: int = 4) -> float:
    """1 - unique/total word n-grams over the last REPETITION_WINDOW characters (0.0 when too short to tell)."""
    words = text[-REPETITION_WINDOW:].split()
    total = len(words) - n + 1
    if total < MIN_NGRAMS:
        return 0.0
    grams = set(zip(*(words[i:] for i in range(n))))
    return 1.0 - len(grams) / total


def _length_penalty(length: int, o: Options) -> float:
    if o.max_response_chars <= 0 or o.length_penalty <= 0:
        return 0.0
    if length > o.max_response_chars:
        return o.length_penalty
    start = o.max_response_chars - o.length_buffer_chars
    if o.length_buffer_chars > 0 and length > start:
        # ratio first: weight * n / n can exceed the weight by an ulp
        return o.length_penalty * min(1.0, (length - start) / o.length_buffer_chars)
    return 0.0


def _repetition_penalty(text: str, o: Options) -> float:
    if o.repetition_penalty <= 0:
        return 0.0
    ratio = repetition_ratio(text, o.repetition_ngram)
    if ratio <= o.repetition_threshold:
        return 0.0
    return o.repetition_penalty * min(1.0, (ratio - o.repetition_threshold) / (1.0 - o.repetition_threshold))


# ---------------------------------------------------------------------------------------------------- scoring
@dataclass
class Result:
    task: str = "unknown"  # the task name for per-task metrics ("unknown" when the ground truth is unusable)
    split_weight: float = 0.0  # split_rows / task_rows of the ground truth (0: unknown)
    named: bool = False  # the task was named (JSON ``task`` or a hint), not inferred from the answer
    answer: object = None  # the canonical answer found in the response, None if none
    accuracy: float = 0.0
    format: float = 0.0
    hedged: float = 0.0
    length_penalty: float = 0.0
    repetition_penalty: float = 0.0
    overall: float = 0.0

    def scores(self) -> dict[str, float]:
        return {"overall": self.overall, "accuracy": self.accuracy, "format": self.format, "hedged": self.hedged,
                "length_penalty": self.length_penalty, "repetition_penalty": self.repetition_penalty}


def _accuracy(response: str, truth: Truth, o: Options) -> tuple[float, float, object]:
    """(accuracy, hedged, canonical answer) of the boxed answers in the response."""
    boxed = extract_boxed(response)
    if boxed is None:
        return 0.0, 1.0, None
    if not boxed:
        return 0.0, 0.0, None
    answers = [canonical_answer(b, truth) for b in boxed]
    final = answers[-1]
    if final is None:
        return 0.0, float(len(boxed) > 1 or _looks_hedged(boxed[-1], truth)), None
    if any(a != final for a in answers):
        return 0.0, 1.0, final
    if truth.kind == "choice":
        return float(final == truth.answer), 0.0, final
    if truth.kind in ("perm", "list"):
        if final == truth.values:
            return 1.0, 0.0, final
        if o.partial_credit and truth.kind == "perm" and sorted(final) == sorted(truth.values):
            return sum(a == b for a, b in zip(final, truth.values)) / len(truth.values), 0.0, final
        return 0.0, 0.0, final
    return float(final == _text_key(truth.answer)), 0.0, final


def evaluate(response, ground_truth, task_hint=None, options: Options = DEFAULT_OPTIONS) -> Result:
    """Score one response; the task name and canonical answer come along for per-task metrics and reports."""
    if isinstance(response, bytes):
        response = response.decode("utf-8", "replace")
    if not isinstance(response, str):
        response = ""
    truth = parse_truth(ground_truth, task_hint)
    r = Result(task=truth.task if truth else "unknown", split_weight=truth.split_weight if truth else 0.0,
               named=bool(truth and truth.named))
    r.format = 1.0 if format_ok(response, options.think_open, options.think_close) else 0.0
    if truth is not None:
        r.accuracy, r.hedged, r.answer = _accuracy(response, truth, options)
        if options.require_format and not r.format:
            r.accuracy = 0.0
    r.length_penalty = _length_penalty(len(response), options)
    r.repetition_penalty = _repetition_penalty(response, options)
    w = options.format_weight
    base = min(1.0, (1.0 - w) * r.accuracy + w * r.format)  # min: (1 - w) + w can round to 1.0000000000000002
    r.overall = base - r.length_penalty - r.repetition_penalty
    return r


ZEROS = dict.fromkeys(KEYS, 0.0)


def score(response, ground_truth, task_hint=None, **options) -> dict[str, float]:
    """The reward of one response: always the keys in KEYS, always finite floats (see the module docstring)."""
    opts = make_options(**options)  # bad option values raise: a configuration error, not an input
    try:
        return evaluate(response, ground_truth, task_hint, opts).scores()
    except Exception as e:  # noqa: BLE001 - a reward must never take a training run down; the tests fuzz evaluate()
        if "evaluate" not in _warned:
            _warned.add("evaluate")
            warnings.warn(f"spatial_ssrl reward: scoring failed ({type(e).__name__}: {e}); scored 0", stacklevel=2)
        return dict(ZEROS)
