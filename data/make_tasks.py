"""Generate the two small non-news tasks shipped in ``data/tasks/`` (the smoke profile's merging study).

Why this exists
---------------
The merging study (notebook 05) trains one adapter per task and merges them, so it needs more than one
task. The real second and third tasks (Rotten Tomatoes, BBC News) come from PyPI wheels, which the tests
and the smoke profile must not need. These two stand-ins are written for this project from hand-made
building blocks, in the ``label,text`` layout any local task uses (a header row, label strings, a
``classes.txt`` fixing the label order), so the smoke pipeline exercises exactly the path a user's own
task takes.

* ``tasks/reviews/``: product reviews, ``negative`` / ``positive`` (2 classes).
* ``tasks/tickets/``: customer-support tickets, ``account`` / ``billing`` / ``delivery`` / ``technical``
  / ``returns`` (5 classes, the width of BBC News).

Why not trivially separable
---------------------------
Like the AG News sample, a share of the rows (``MIXED``) is ambiguous by construction: a mixed review
praises one thing and blames another and is labelled by a fixed 60/40 draw; a mixed ticket names two
topics and takes one of them. The rest carry clear cues. No row of either file is copied from a real
source. A fixed seed and the standard library only: running it again writes byte-identical files::

    python data/make_tasks.py
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

SEED = 20261201
OUT_DIR = Path(__file__).resolve().parent / "tasks"
N_TRAIN = 240  # rows per task, balanced over its classes
N_TEST = 120
MIXED = 0.3  # share of rows that are ambiguous by construction
MAJORITY = 0.6  # a mixed row takes its first topic this often

PRODUCTS = ["kettle", "blender", "desk lamp", "backpack", "phone case", "rice cooker", "office chair",
            "hiking boots", "headphones", "toaster", "yoga mat", "coffee grinder", "umbrella", "power bank"]
ASPECTS = ["battery", "handle", "lid", "strap", "switch", "cable", "finish", "zip", "base", "cushion"]
GOOD = ["works perfectly", "feels solid", "is a joy to use", "exceeded my hopes", "does exactly what it says",
        "was worth every penny", "is sturdy and quiet", "still looks new", "arrived well packed"]
BAD = ["stopped working", "feels flimsy", "is a pain to use", "broke within a week", "never did what it says",
       "was a waste of money", "rattles and squeaks", "already looks worn", "arrived scratched"]
GOOD_END = ["Would buy again.", "Highly recommended.", "Five stars from me.", "My family loves it.",
            "Great value."]
BAD_END = ["Sending it back.", "Avoid this one.", "One star.", "Very disappointed.", "Not worth it."]

TOPICS = {
    "account": ["I cannot log in to my account", "my password reset email never arrives",
                "please change the email address on my profile", "someone else signed in to my account",
                "I want to close my account", "two-factor codes are not accepted"],
    "billing": ["I was charged twice this month", "the invoice shows the wrong amount",
                "my card payment was declined", "please explain this extra fee",
                "I need a receipt for my last order", "the discount code was not applied"],
    "delivery": ["my parcel has not arrived", "the courier left the box at the wrong door",
                 "tracking has not updated for a week", "can I change the delivery address",
                 "the package arrived a day late", "the driver never rang the bell"],
    "technical": ["the app crashes when I open it", "the website shows an error page",
                  "the device will not connect to wifi", "the update failed halfway",
                  "the screen freezes after a minute", "notifications stopped working"],
    "returns": ["I would like to return this item", "how do I get a refund for my order",
                "the return label does not print", "I sent the item back but no refund yet",
                "can I exchange this for another size", "the return window has closed too early"],
}
OPENERS = ["Hello,", "Hi team,", "Good morning,", "Dear support,", "Hey,", ""]
CLOSERS = ["Thanks.", "Please help.", "Regards.", "This is urgent.", "Cheers.", ""]
ORDER = ["order", "purchase", "account"]


def review(rng: random.Random, positive: bool) -> str:
    product, aspect = rng.choice(PRODUCTS), rng.choice(ASPECTS)
    verdict = rng.choice(GOOD if positive else BAD)
    end = rng.choice(GOOD_END if positive else BAD_END)
    return f"The {product} {verdict}. The {aspect} {rng.choice(GOOD + BAD)}. {end}"


def mixed_review(rng: random.Random) -> tuple[str, bool]:
    """One clause each way, the label drawn 60/40 towards the first: ambiguous on purpose."""
    product, aspect = rng.choice(PRODUCTS), rng.choice(ASPECTS)
    first = rng.random() < 0.5
    one, other = (GOOD, BAD) if first else (BAD, GOOD)
    text = f"The {product} {rng.choice(one)}, but the {aspect} {rng.choice(other)}."
    return text, first if rng.random() < MAJORITY else not first


def ticket(rng: random.Random, topic: str, second: str | None = None) -> str:
    body = rng.choice(TOPICS[topic])
    if second is not None:
        body += f", and also {rng.choice(TOPICS[second])}"
    number = rng.randint(10000, 99999)
    return " ".join(p for p in (rng.choice(OPENERS), f"{body[0].upper()}{body[1:]}.",
                                f"My {rng.choice(ORDER)} number is {number}.", rng.choice(CLOSERS)) if p)


def reviews(rng: random.Random, n: int) -> list[tuple[str, str]]:
    rows = []
    for i in range(n):
        want = i % 2 == 1
        if rng.random() < MIXED:
            text, positive = mixed_review(rng)
        else:
            text, positive = review(rng, want), want
        rows.append(("positive" if positive else "negative", text))
    return rows


def tickets(rng: random.Random, n: int) -> list[tuple[str, str]]:
    names = list(TOPICS)
    rows = []
    for i in range(n):
        topic = names[i % len(names)]
        if rng.random() < MIXED:
            second = rng.choice([t for t in names if t != topic])
            label = topic if rng.random() < MAJORITY else second
            rows.append((label, ticket(rng, topic, second)))
        else:
            rows.append((topic, ticket(rng, topic)))
    return rows


def write(name: str, classes: list[str], train: list[tuple[str, str]], test: list[tuple[str, str]]) -> None:
    directory = OUT_DIR / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "classes.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
    for split, rows in (("train", train), ("test", test)):
        with open(directory / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n")
            writer.writerow(["label", "text"])
            writer.writerows(rows)


def split(rows: list[tuple[str, str]], n_test: int, rng: random.Random) -> tuple[list, list]:
    """Deduplicate texts, then shuffle and cut: no text on both sides."""
    seen, unique = set(), []
    for label, text in rows:
        if text not in seen:
            seen.add(text)
            unique.append((label, text))
    rng.shuffle(unique)
    return unique[n_test:], unique[:n_test]


def main() -> None:
    rng = random.Random(SEED)
    train, test = split(reviews(rng, N_TRAIN + N_TEST + 40), N_TEST, rng)
    write("reviews", ["negative", "positive"], train[:N_TRAIN], test)
    train, test = split(tickets(rng, N_TRAIN + N_TEST + 40), N_TEST, rng)
    write("tickets", list(TOPICS), train[:N_TRAIN], test)
    for name in ("reviews", "tickets"):
        n = {s: sum(1 for _ in open(OUT_DIR / name / f"{s}.csv", encoding="utf-8")) - 1 for s in ("train", "test")}
        print(f"{name}: {n['train']} train, {n['test']} test rows -> {OUT_DIR / name}")


if __name__ == "__main__":
    main()
