#!/usr/bin/env python3
"""Extract speakable example sentences from WordNet 3.0 into ``moeaudio/data/synth/wordnet_sentences.txt``.

Why WordNet: the synthetic corpus's open-vocabulary ASR job (``speech_open_asr``) needs thousands of
ordinary English sentences that install offline under a licence that allows redistribution. WordNet 3.0
ships tens of thousands of short example sentences in its glosses (``"the dog barked all night"``), and
Debian packages it as ``wordnet-base`` (licence "WordNet 3.0": use, copy, modify and distribute with the
notice kept; see ``WORDNET_LICENSE.txt`` next to the output).

Getting the input (no network needed once the .deb is at hand)::

    apt-get download wordnet-base && dpkg -x wordnet-base_*.deb /tmp/wnb/x
    python scripts/extract_wordnet_sentences.py /tmp/wnb/x/usr/share/wordnet

What is kept: every double-quoted example in the glosses of ``data.noun``, ``data.verb``, ``data.adj`` and
``data.adv`` that, after normalising (lower case, curly quotes and backquotes to ``'``, the final ``.``,
``?`` or ``!`` dropped, spaces collapsed, no space before a comma), consists only of lower-case letters,
spaces, apostrophes and commas; has 4-12 words; has no word that starts or ends with an apostrophe
(quotes, dropped letters) and no comma that is not followed by a word; and whose every word is a WordNet
lemma (of the four indexes, their exception lists or WordNet's regular inflections), a common function
word or contraction (``COMMON_WORDS`` below), or such a word with ``'s``. Sentences with an offensive
word are dropped: one whose most frequent WordNet sense is marked as an ethnic slur, obscenity or
vulgarism (by its usage-domain pointer or its gloss), or one of the few in ``EXTRA_OFFENSIVE``. What eSpeak says and what a listener writes down are then the same
string. Duplicates are dropped; the output is sorted, one sentence a line.

The licence file gets the full WordNet 3.0 licence from the package's ``copyright`` file and a line
naming the package version and this script.
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "moeaudio" / "data" / "synth" / "wordnet_sentences.txt"
DEFAULT_LICENSE = REPO / "moeaudio" / "data" / "synth" / "WORDNET_LICENSE.txt"

POS_FILES = ("noun", "verb", "adj", "adv")
MIN_WORDS, MAX_WORDS = 4, 12

#: Words WordNet has no entry for (it lists only nouns, verbs, adjectives and adverbs): pronouns,
#: determiners, prepositions, conjunctions, auxiliaries and the usual contractions.
COMMON_WORDS = frozenset(
    """
    a an the this that these those some any each every either neither no none all both few many much
    more most other another such what which who whom whose whoever whatever whichever
    i me my mine myself you your yours yourself yourselves he him his himself she her hers herself it its
    itself we us our ours ourselves they them their theirs themselves one oneself
    am is are was were be been being have has had having do does did doing done
    will would shall should can could may might must ought
    and or but nor so yet if then than because though although unless until till while whereas whether
    as since once when whenever where wherever why how
    of to in on at by for with without from into onto upon about above below over under between among
    through throughout during before after against within along across around behind beyond beside
    besides near off out up down toward towards per via despite except inside outside
    not never also too very just only even still already ever here there now
    i'm i've i'll i'd you're you've you'll you'd he's he'll he'd she's she'll she'd it's it'll it'd
    we're we've we'll we'd they're they've they'll they'd that's there's here's what's who's where's
    let's isn't aren't wasn't weren't haven't hasn't hadn't don't doesn't didn't won't wouldn't shan't
    shouldn't can't couldn't mustn't mightn't needn't oughtn't
    """.split()
)

#: Usage-domain synsets whose members are offensive, and gloss words that mark a sense as offensive.
OFFENSIVE_DOMAINS = ("ethnic_slur", "obscenity", "vulgarism")
OFFENSIVE_GLOSS = re.compile(
    r"ethnic slur|obscen|vulgar|offensive (term|name|word)|(disparaging|derogatory) (term|name)", re.I
)
#: Slurs and profanities whose first WordNet sense is not marked as such (so the rule above misses them).
EXTRA_OFFENSIVE = frozenset(
    "bitch bitches coon coons cunt cocksucker gook retard slut twat whore whoreson".split()
)
_POS_NAMES = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}

# WordNet's regular inflections (morphy's detachment rules), per part of speech.
_SUFFIXES = {
    "noun": (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
             ("men", "man"), ("ies", "y")),
    "verb": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"),
             ("ing", "")),
    "adj": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "adv": (),
}  # fmt: skip

_QUOTED = re.compile(r'"([^"]*)"')
_ALLOWED = re.compile(r"[a-z' ,]+")


def _data_lines(path: Path):
    """The synset lines of a WordNet data/index file (the licence header's lines start with spaces)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.startswith(" "):
                yield line.rstrip("\n")


class Lexicon:
    """WordNet's lemmas per part of speech (with the exception lists) and the offensive lemmas."""

    def __init__(self, wordnet: Path) -> None:
        self.lemmas: dict[str, set[str]] = {}
        for pos in POS_FILES:
            words: set[str] = set()
            for line in _data_lines(wordnet / f"index.{pos}"):
                words.update(line.split(" ", 1)[0].lower().split("_"))
            exc = wordnet / f"{pos}.exc"
            if exc.is_file():
                for line in exc.read_text(encoding="utf-8", errors="replace").splitlines():
                    words.update(line.split()[:1])
            self.lemmas[pos] = words
        self.offensive = self._offensive(wordnet)

    @staticmethod
    def _offensive(wordnet: Path) -> set[str]:
        """One-word lemmas whose most frequent sense (WordNet's first, in any part of speech) is offensive.

        A sense is offensive when its synset points to the ethnic-slur, obscenity or vulgarism usage
        domain, or its gloss says so (``OFFENSIVE_GLOSS``). Why the first sense only: words such as
        "black" or "boy" have an offensive sense too, and their ordinary examples should stay.
        """
        domains: set[tuple[str, str]] = set()
        pointers: list[tuple[tuple[str, str], tuple[str, str]]] = []
        flagged: set[tuple[str, str]] = set()
        for pos in POS_FILES:
            for line in _data_lines(wordnet / f"data.{pos}"):
                fields, _, gloss = line.partition(" | ")
                f = fields.split()
                key, n_words = (f[0], pos), int(f[3], 16)
                if any(f[4 + 2 * i].lower().split("(")[0] in OFFENSIVE_DOMAINS for i in range(n_words)):
                    domains.add(key)
                if OFFENSIVE_GLOSS.search(gloss.split('"')[0]):
                    flagged.add(key)
                i = 4 + 2 * n_words
                for _ in range(int(f[i])):
                    symbol, offset, tpos = f[i + 1], f[i + 2], f[i + 3]
                    i += 4
                    if symbol == ";u":
                        pointers.append((key, (offset, _POS_NAMES[tpos])))
        flagged |= {src for src, dst in pointers if dst in domains}
        offensive: set[str] = set()
        for pos in POS_FILES:
            for line in _data_lines(wordnet / f"index.{pos}"):
                f = line.split()
                lemma, n_pointers = f[0], int(f[3])
                first_sense = f[4 + n_pointers + 2]
                if "_" not in lemma and (first_sense, pos) in flagged:
                    offensive.add(lemma)
        return offensive | EXTRA_OFFENSIVE

    def knows(self, word: str) -> bool:
        """Whether ``word`` is a common word or a WordNet lemma, possibly inflected or with ``'s``."""
        if word in COMMON_WORDS:
            return True
        if word.endswith("'s"):
            word = word[:-2]
            if word in COMMON_WORDS:
                return True
        if "'" in word:
            return False
        for pos, words in self.lemmas.items():
            if word in words:
                return True
            for suffix, ending in _SUFFIXES[pos]:
                if word.endswith(suffix) and word[: len(word) - len(suffix)] + ending in words:
                    return True
        return False


def normalise(example: str) -> str:
    """Lower case, straight apostrophes, no final punctuation, single spaces, ``x, y`` commas."""
    text = example.lower().replace("\u2019", "'").replace("`", "'")
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"[.?!]+$", "", text).strip()
    text = re.sub(r"\s+,", ",", text)
    return text


def speakable(text: str, lexicon: Lexicon) -> bool:
    """The filter described in the module docstring."""
    if not text or not _ALLOWED.fullmatch(text) or text.startswith(",") or text.endswith(","):
        return False
    if ",," in text or re.search(r",(?! )", text):
        return False
    words = text.replace(",", "").split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    if any(w.startswith("'") or w.endswith("'") or w.count("'") > 1 for w in words):
        return False
    if any(w in lexicon.offensive or w.removesuffix("'s") in lexicon.offensive for w in words):
        return False
    return all(lexicon.knows(w) for w in words)


def extract(wordnet: Path) -> tuple[list[str], dict[str, int]]:
    """The sorted, distinct speakable examples, and counts of what was seen and kept."""
    lexicon = Lexicon(wordnet)
    seen, kept = 0, set()
    for pos in POS_FILES:
        for line in _data_lines(wordnet / f"data.{pos}"):
            gloss = line.partition(" | ")[2]
            for example in _QUOTED.findall(gloss):
                seen += 1
                text = normalise(example)
                if speakable(text, lexicon):
                    kept.add(text)
    return sorted(kept), {"examples": seen, "kept": len(kept), "offensive_lemmas": len(lexicon.offensive)}


def _package_version(doc: Path) -> str:
    """``wordnet-base`` version from the package's Debian changelog (its first line), if present."""
    changelog = doc / "changelog.Debian.gz"
    if changelog.is_file():
        first = gzip.decompress(changelog.read_bytes()).decode("utf-8", "replace").splitlines()[0]
        m = re.match(r"\S+ \(([^)]+)\)", first)
        if m:
            return m[1]
    return "unknown"


def _licence_text(copyright_file: Path) -> str:
    """The ``License: WordNet3.0`` paragraph of a Debian copyright file, unindented."""
    lines = copyright_file.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("License: WordNet"))
    body = []
    for line in lines[start + 1 :]:
        if not line.startswith(" "):
            break
        body.append("" if line.strip() == "." else line[1:])
    return "\n".join(body).strip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "wordnet", type=Path, help="folder with data.noun etc. (usr/share/wordnet of wordnet-base)"
    )
    parser.add_argument(
        "--doc", type=Path, default=None, help="usr/share/doc/wordnet-base (default: beside it)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--license-out", type=Path, default=DEFAULT_LICENSE)
    args = parser.parse_args(argv)
    doc = args.doc or args.wordnet.parent / "doc" / "wordnet-base"
    sentences, stats = extract(args.wordnet)
    args.out.write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
    version = _package_version(doc)
    provenance = (
        f"{args.out.name} was extracted from the example sentences of WordNet 3.0 (data.noun, data.verb, "
        f"data.adj, data.adv) as packaged by Debian in wordnet-base {version}, by "
        f"scripts/extract_wordnet_sentences.py of moeaudio ({stats['kept']} of {stats['examples']} "
        "examples kept: normalised, filtered and deduplicated; the sentences themselves are unchanged "
        "WordNet text apart from case and punctuation)."
    )
    licence = (
        "WordNet 3.0 licence (from the wordnet-base package's copyright file)\n"
        "=====================================================================\n\n"
        f"{_licence_text(doc / 'copyright')}\n{provenance}\n"
    )
    args.license_out.write_text(licence, encoding="utf-8")
    print(f"{stats['kept']} sentences of {stats['examples']} examples -> {args.out}", file=sys.stderr)
    print(
        f"{stats['offensive_lemmas']} offensive lemmas excluded; licence -> {args.license_out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
