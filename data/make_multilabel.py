"""Generate the multi-label news sample shipped in ``data/tasks/topics-multilabel/``.

Why this exists
---------------
Multi-label tasks (a set of labels per example) need an offline sample the tests, the smoke and demo
profiles and the book can use without the hub, as the AG News sample does for single-label topics.
GoEmotions and Reuters-21578 come from the hub only. This file is written for this project from
hand-made building blocks (no row is copied from a real source) in the ``label,text`` layout of every
local task: a header row, labels joined by ``|``, and ``classes.txt`` fixing the order of the four AG
News topics (World, Sports, Business, Sci/Tech).

What a story is
---------------
Each story has one, two or three topics (about 50 / 35 / 15 %). Every topic of the story contributes
one sentence about it; a story about a sports club's debts is ``Sports|Business``, a space launch paid
for by a government treaty ``World|Sci/Tech``.

Why not trivially separable
---------------------------
* Passing mentions: a third of the stories also mention a topic they are *not* about (a match report
  that names the stadium's sponsor, a trade story that mentions a phone maker): the words are there,
  the label is not.
* Weak secondary topics: a share of the second and third topics is stated only by a vague sentence
  whose wording is shared between topics ("the deal was signed on Tuesday").
* Label noise: each of a story's labels is dropped, and each absent topic added, with a small
  probability (``NOISE``), as annotators disagree on multi-topic news.

A fixed seed and the standard library only: running it again writes byte-identical files::

    python data/make_multilabel.py
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

SEED = 20261215
OUT_DIR = Path(__file__).resolve().parent / "tasks" / "topics-multilabel"
CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
N_TRAIN = 640
N_TEST = 320
CARDINALITY = [(1, 0.5), (2, 0.35), (3, 0.15)]  # topics per story
PASSING = 0.33  # stories that also mention a topic they are not about
WEAK = 0.3  # share of second/third topics stated only vaguely
NOISE = 0.03  # per label: dropped if present, added if absent

PLACES = ["Corvania", "Marovia", "Eastmoor", "Velland", "Ostrava Bay", "the Teluric Republic", "Norhaven",
          "Calder Isles", "Brenmark", "Sunport"]
PEOPLE = ["Mira Pereira", "Tomas Adeyemi", "Lena Kovac", "Rafael Ortiz", "Anika Sood", "Jonah Whitlock",
          "Sara Lindqvist", "Omar Haddad", "Yuki Tanabe", "Elena Brandt"]
TEAMS = ["Eastmoor Rovers", "Velland City", "the Norhaven Hawks", "Sunport United", "Brenmark Athletic",
         "the Calder Sharks"]
FIRMS = ["Granite Peak Mining", "Helix Foods", "Brightline Telecom", "Orison Motors", "Kestrel Airways",
         "Northwind Bank", "Quanta Devices", "Solace Pharma"]
LABS = ["the Corvanian space agency", "Velland Institute of Technology", "a Marovian robotics lab",
        "Quanta Devices' research unit", "the Norhaven genome centre"]

MAIN = {
    "World": ["{place}'s parliament voted to tighten border controls after weeks of protests.",
              "Leaders of {place} and {place2} agreed a ceasefire along their disputed frontier.",
              "Foreign minister {person} called for sanctions against the government of {place}.",
              "Thousands marched in the capital of {place} demanding early elections.",
              "The United Nations sent envoys to {place} as refugees crossed into {place2}.",
              "{place} recalled its ambassador from {place2} in a row over a detained journalist."],
    "Sports": ["{team} beat {team2} 3-1 to reach the cup final.",
               "Striker {person} scored twice as {team} stayed top of the league.",
               "{team} sacked their coach after a fifth straight defeat.",
               "{person} won the marathon in {place} in a course record time.",
               "The championship match between {team} and {team2} ended goalless after extra time.",
               "{person} retired from international tennis after a third knee operation."],
    "Business": ["Shares in {firm} fell 12 percent after it cut its profit forecast.",
                 "{firm} agreed to buy a rival for $2.4 billion in cash and stock.",
                 "{firm} filed for bankruptcy protection, blaming rising debt costs.",
                 "The central bank of {place} raised interest rates to curb inflation.",
                 "{firm} will cut 1,800 jobs as quarterly revenue slumped.",
                 "Investors cheered as {firm} reported record quarterly earnings."],
    "Sci/Tech": ["Researchers at {lab} unveiled a battery that charges in four minutes.",
                 "{lab} launched a probe to study the atmosphere of Venus.",
                 "A software flaw let hackers read messages on millions of phones, {lab} warned.",
                 "Scientists at {lab} sequenced the genome of a drought-resistant wheat.",
                 "{lab} demonstrated a chip that runs neural networks on a tenth of the power.",
                 "Astronomers at {lab} found water vapour on a distant exoplanet."],
}
# the link when a second or third topic enters the story: sentences about that topic in the story's context
LINKED = {
    "World": ["The government of {place} said the matter would be raised at the next summit.",
              "Officials in {place} warned that the dispute could strain relations with {place2}.",
              "Opposition leaders in {place} demanded an inquiry into the minister's role."],
    "Sports": ["The club {team} said the stadium would still host the cup final.",
               "Players of {team} staged a protest before their league match on Saturday.",
               "The football league said {team} would lose points over the affair."],
    "Business": ["Shares in {firm} slid as investors weighed the cost.",
                 "{firm} said the contract was worth about $300 million over five years.",
                 "Analysts said the deal would weigh on {firm}'s quarterly profits."],
    "Sci/Tech": ["Engineers at {lab} said the satellite's software had been patched.",
                 "The system relies on a new chip designed at {lab}.",
                 "Researchers at {lab} said the data would be published in a scientific journal."],
}
# vague: wording any topic's story could use
WEAK_SENTENCES = ["The deal was signed on Tuesday after months of talks.",
                  "Critics said the decision came far too late.",
                  "A spokesperson declined to comment on the figures.",
                  "The announcement surprised many observers.",
                  "Further details are expected next week."]
WEAK_CUES = {"World": "Diplomats", "Sports": "Fans", "Business": "Traders", "Sci/Tech": "Engineers"}
# a topic's words without the story being about it
PASSING_MENTIONS = {
    "World": ["The event was broadcast in {place} and {place2}.", "Visitors from {place} attended."],
    "Sports": ["The press conference was held at the {team} stadium.", "{person}, a keen football fan, was present."],
    "Business": ["The hall was sponsored by {firm}.", "Tickets were sold through {firm}'s app."],
    "Sci/Tech": ["The speech was streamed online by {lab}.", "Attendees used a smartphone app to vote."],
}


def fill(template: str, rng: random.Random) -> str:
    """A template with its names drawn (two different places, teams)."""
    place, place2 = rng.sample(PLACES, 2)
    team, team2 = rng.sample(TEAMS, 2)
    return template.format(place=place, place2=place2, team=team, team2=team2, person=rng.choice(PEOPLE),
                           firm=rng.choice(FIRMS), lab=rng.choice(LABS))


def story(rng: random.Random) -> tuple[list[str], str]:
    """One story: its topics (before noise) and its text."""
    k = rng.choices([k for k, _ in CARDINALITY], weights=[w for _, w in CARDINALITY])[0]
    topics = rng.sample(CLASSES, k)
    sentences = [fill(rng.choice(MAIN[topics[0]]), rng)]
    for topic in topics[1:]:
        if rng.random() < WEAK:
            sentences.append(f"{WEAK_CUES[topic]} reacted cautiously. {rng.choice(WEAK_SENTENCES)}")
        else:
            sentences.append(fill(rng.choice(LINKED[topic]), rng))
    if rng.random() < PASSING:
        other = [t for t in CLASSES if t not in topics]
        if other:
            sentences.insert(rng.randrange(1, len(sentences) + 1), fill(rng.choice(PASSING_MENTIONS[rng.choice(other)]), rng))
    return topics, " ".join(sentences)


def noisy(topics: list[str], rng: random.Random) -> list[str]:
    """Annotator disagreement: each label dropped, each absent topic added, with probability NOISE; never empty."""
    kept = [t for t in CLASSES if (t in topics) != (rng.random() < NOISE)]
    return kept or topics[:1]


def rows(rng: random.Random, n: int, seen: set[str]) -> list[tuple[str, str]]:
    """``n`` stories with distinct texts (none repeated across train and test)."""
    out = []
    while len(out) < n:
        topics, text = story(rng)
        if text in seen:
            continue
        seen.add(text)
        out.append(("|".join(noisy(topics, rng)), text))
    return out


def write(train: list[tuple[str, str]], test: list[tuple[str, str]]) -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "classes.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    for split, data in (("train", train), ("test", test)):
        with open(OUT_DIR / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n")
            writer.writerow(["label", "text"])
            writer.writerows(data)


def main() -> None:
    rng = random.Random(SEED)
    seen: set[str] = set()
    train, test = rows(rng, N_TRAIN, seen), rows(rng, N_TEST, seen)
    write(train, test)
    sizes = [len(labels.split("|")) for labels, _ in train]
    print(f"wrote {OUT_DIR}: {len(train)} train, {len(test)} test stories; "
          f"labels per story {sum(sizes) / len(sizes):.2f}")


if __name__ == "__main__":
    main()
