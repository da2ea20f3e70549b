"""Spoken questions: a CPU-scale twin of VoiceBench's MMSU / OpenBookQA for a pretrained LLM.

Why: the ``speech_qa`` job asks a question in speech whose answer needs knowledge an instruct LLM has as
text and the audio alone does not give ("What is the opposite of hot?", "What is three plus four?").
The audio reads the question only; the four options are text in the item (``choices``), so the adapter
has to carry the question's meaning into the LLM and the LLM has to know the answer.

The questions come from the templates and word lists below (no model chose or filtered them). Each
question of the bank (:func:`question_bank`) is a spoken text, the options that answer it (one is drawn
per item: "Which of these is a fruit?" has every fruit) and the distractors that do not (same family's
word lists, minus near-synonyms that could also be argued right). An item draws a family (weighted by
the square root of its size in the item's split, so big families such as arithmetic do not crowd out
small ones), a question, its correct option and three distractors; the correct option goes to the
letter the corpus planner assigned (round-robin over a shuffled A-D per split, like class labels), so
every split has each answer position equally often (within one item).

Held-out questions: each question's split is fixed by a stable hash of its spoken text (SHA-256; 80 %
train, 10 % valid, 10 % test), so no valid or test item speaks a question that a train item speaks. The
pools do not depend on the seed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import numpy as np

from moeaudio.data.synth.items import _Made, _Spec
from moeaudio.data.synth.labels import _MCQ_SUFFIX
from moeaudio.data.synth.speech import _speak
from moeaudio.data.tasks import format_choices

# --------------------------------------------------------------------------------------------------------
# Word lists
# --------------------------------------------------------------------------------------------------------

NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
    "twenty one", "twenty two", "twenty three", "twenty four", "twenty five", "twenty six", "twenty seven",
    "twenty eight", "twenty nine", "thirty",
)  # fmt: skip

_TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "one hundred")

#: category -> (name with article, plural name, members). Members carry their own article ("an apple",
#: "milk", "France") so every template reads naturally.
CATEGORIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "fruit": ("a fruit", "fruits", ("an apple", "a banana", "a pear", "a cherry", "a grape", "a lemon",
              "a mango", "a peach", "a plum", "a strawberry", "a pineapple", "a watermelon")),
    "vegetable": ("a vegetable", "vegetables", ("a carrot", "a potato", "an onion", "a cabbage", "a turnip",
                  "a leek", "a radish", "a parsnip", "a cauliflower", "a lettuce")),
    "animal": ("an animal", "animals", ("a dog", "a cat", "a horse", "a cow", "a lion", "a tiger",
               "an elephant", "a rabbit", "a bear", "a monkey", "a sheep", "a goat", "a zebra")),
    "bird": ("a bird", "birds", ("a robin", "a parrot", "an eagle", "an owl", "a pigeon", "a sparrow",
             "a swan", "a crow", "a penguin", "an ostrich")),
    "insect": ("an insect", "insects", ("an ant", "a bee", "a butterfly", "a fly", "a beetle", "a mosquito",
               "a grasshopper", "a ladybird")),
    "vehicle": ("a vehicle", "vehicles", ("a car", "a bus", "a truck", "a bicycle", "a train", "a motorbike",
                "a tractor", "a van", "a taxi")),
    "tool": ("a tool", "tools", ("a hammer", "a saw", "a screwdriver", "a spanner", "a drill", "a shovel",
             "a rake", "a chisel")),
    "furniture": ("a piece of furniture", "furniture", ("a chair", "a table", "a sofa", "a bed", "a wardrobe",
                  "a desk", "a bookcase", "a stool", "a cupboard")),
    "clothing": ("a piece of clothing", "clothes", ("a shirt", "a coat", "a sock", "a skirt", "a jacket",
                 "a scarf", "a dress", "a sweater", "a glove")),
    "instrument": ("a musical instrument", "musical instruments", ("a piano", "a guitar", "a violin",
                   "a drum", "a trumpet", "a flute", "a harp", "a cello", "a clarinet")),
    "drink": ("a drink", "drinks", ("milk", "tea", "coffee", "juice", "lemonade", "cocoa")),
    "colour": ("a colour", "colours", ("red", "blue", "green", "yellow", "purple", "pink", "brown", "grey")),
    "body part": ("a part of the body", "parts of the body", ("an arm", "a leg", "a hand", "a foot", "a knee",
                  "an elbow", "a nose", "an ear", "a finger", "a shoulder")),
    "shape": ("a shape", "shapes", ("a circle", "a square", "a triangle", "a rectangle", "an oval",
              "a pentagon", "a hexagon")),
    "sport": ("a sport", "sports", ("football", "tennis", "golf", "basketball", "swimming", "hockey", "rugby",
              "baseball")),
    "country": ("a country", "countries", ("France", "Spain", "Japan", "Brazil", "Canada", "Egypt", "India",
                "Mexico", "Italy", "Kenya")),
    "metal": ("a metal", "metals", ("iron", "gold", "silver", "copper", "tin", "zinc")),
    "flower": ("a flower", "flowers", ("a rose", "a tulip", "a daisy", "a lily", "a sunflower", "a daffodil",
               "an orchid")),
    "tree": ("a tree", "trees", ("an oak", "a pine", "a willow", "a birch", "a maple", "an elm")),
    "weekday": ("a day of the week", "days of the week", ("Monday", "Tuesday", "Wednesday", "Thursday",
                "Friday", "Saturday", "Sunday")),
    "month": ("a month", "months", ("January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December")),
}  # fmt: skip
#: Categories whose members also belong to another (a bird is an animal too): never each other's distractor.
_CATEGORY_OVERLAP: dict[str, tuple[str, ...]] = {"animal": ("bird", "insect")}

#: Opposites, one (word, opposite) per line; both directions are asked unless the word is in ``_ONE_WAY``.
_OPPOSITES: tuple[tuple[str, str], ...] = (
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("wet", "dry"), ("full", "empty"),
    ("loud", "quiet"), ("rich", "poor"), ("clean", "dirty"), ("early", "late"), ("strong", "weak"),
    ("thick", "thin"), ("near", "far"), ("inside", "outside"), ("push", "pull"), ("win", "lose"),
    ("first", "last"), ("up", "down"), ("left", "right"), ("open", "closed"), ("day", "night"),
    ("black", "white"), ("top", "bottom"), ("front", "back"), ("above", "below"), ("before", "after"),
    ("true", "false"), ("safe", "dangerous"), ("friend", "enemy"), ("love", "hate"), ("asleep", "awake"),
    ("alive", "dead"), ("north", "south"), ("east", "west"), ("boy", "girl"), ("king", "queen"),
    ("question", "answer"), ("high", "low"), ("deep", "shallow"), ("wide", "narrow"), ("sharp", "blunt"),
    ("remember", "forget"), ("smooth", "rough"), ("cheap", "expensive"), ("tidy", "messy"),
    ("polite", "rude"), ("arrive", "leave"), ("buy", "sell"), ("laugh", "cry"), ("always", "never"),
    ("come", "go"), ("summer", "winter"), ("easy", "difficult"), ("start", "finish"), ("in", "out"),
    ("on", "off"), ("yes", "no"), ("lost", "found"), ("husband", "wife"), ("brother", "sister"),
    ("uncle", "aunt"), ("man", "woman"), ("mother", "father"), ("son", "daughter"), ("borrow", "lend"),
    ("ancient", "modern"), ("public", "private"), ("possible", "impossible"), ("sink", "float"),
    ("whisper", "shout"), ("good", "bad"), ("upstairs", "downstairs"), ("forward", "backward"),
    ("odd", "even"), ("floor", "ceiling"), ("entrance", "exit"), ("sunrise", "sunset"), ("add", "subtract"),
    ("tall", "short"), ("long", "short"), ("heavy", "light"), ("dark", "light"), ("young", "old"),
    ("new", "old"), ("sour", "sweet"), ("hard", "soft"), ("noisy", "quiet"),
)  # fmt: skip
#: Words whose opposite is not one word ("short" is the opposite of "tall" and "long"): asked one way only.
_ONE_WAY = frozenset({"short", "light", "old", "sweet", "soft", "quiet", "right", "hard"})
#: Near-synonyms: a word is never a distractor for an answer (or question word) of the same group.
_SYNONYMS: tuple[frozenset[str], ...] = tuple(
    frozenset(g.split())
    for g in (
        "small short low thin narrow shallow", "big tall high thick wide deep long heavy",
        "quiet soft", "loud noisy", "hard difficult", "dark black night", "light white day",
        "finish last", "start first", "bad", "sad cry", "happy laugh", "down below bottom",
        "up above top", "after back", "before front", "false", "true right", "love friend", "hate enemy",
        "cheap poor", "expensive rich", "go leave", "come arrive", "lose lost", "win found",
        "sunset night", "sunrise day", "out outside", "in inside", "off", "on", "no never", "yes always",
        "old ancient", "new modern young", "closed", "open", "end finish", "back backward", "front forward",
        "up high", "down low", "clean tidy", "dirty messy", "loud noisy shout", "quiet soft whisper",
        "man boy husband brother uncle father son king", "woman girl wife sister aunt mother daughter queen",
    )
)  # fmt: skip

#: (task, tool): "What do you use to <task>?"
_USES: tuple[tuple[str, str], ...] = (
    ("cut paper", "scissors"), ("write a letter", "a pen"), ("sweep the floor", "a broom"),
    ("dig a hole", "a shovel"), ("eat soup", "a spoon"), ("brush your teeth", "a toothbrush"),
    ("comb your hair", "a comb"), ("tell the time", "a clock"), ("open a locked door", "a key"),
    ("see in the dark", "a torch"), ("take a photo", "a camera"), ("dry yourself after a bath", "a towel"),
    ("hit a nail", "a hammer"), ("keep food cold", "a fridge"), ("bake a cake", "an oven"),
    ("boil water for tea", "a kettle"), ("stay dry in the rain", "an umbrella"), ("measure a line", "a ruler"),
    ("sew on a button", "a needle"), ("climb onto a roof", "a ladder"), ("iron your clothes", "an iron"),
    ("paint a wall", "a paintbrush"), ("rub out a pencil mark", "an eraser"), ("stick paper together", "glue"),
    ("look at the stars", "a telescope"), ("see very tiny things", "a microscope"), ("weigh yourself", "scales"),
    ("row a boat", "oars"), ("wash your hands", "soap"), ("water the plants", "a watering can"),
    ("find your way in a strange city", "a map"), ("lock your bicycle", "a chain"),
    ("cut the grass", "a lawnmower"), ("blow your nose", "a tissue"),
)  # fmt: skip
#: Pairs that must not be each other's distractor (both could do the job).
_USE_CLASH = (("scissors", "a lawnmower"), ("a tissue", "a towel"), ("a chain", "a key"))

#: thing -> its colour.
_COLOURS: tuple[tuple[str, str], ...] = (
    ("a ripe banana", "yellow"), ("grass", "green"), ("the sky on a sunny day", "blue"), ("fresh snow", "white"),
    ("coal", "black"), ("a ripe tomato", "red"), ("a lemon", "yellow"), ("milk", "white"),
    ("milk chocolate", "brown"), ("a carrot", "orange"), ("a fire engine", "red"), ("a polar bear", "white"),
    ("a crow", "black"), ("a leaf in summer", "green"), ("a ripe strawberry", "red"), ("a pumpkin", "orange"),
    ("a flamingo", "pink"), ("an aubergine", "purple"), ("a lime", "green"), ("the sea on a sunny day", "blue"),
    ("a tree trunk", "brown"), ("a raven", "black"), ("a cloud on a sunny day", "white"), ("a ripe cherry", "red"),
    ("egg yolk", "yellow"), ("a frog", "green"),
)  # fmt: skip
_COLOUR_NAMES = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")

#: (animal, its sound): "Which animal says moo?" and "What sound does a cow make?"
_ANIMAL_SOUNDS: tuple[tuple[str, str], ...] = (
    ("a cow", "moo"), ("a dog", "woof"), ("a cat", "meow"), ("a duck", "quack"), ("a pig", "oink"),
    ("a sheep", "baa"), ("a horse", "neigh"), ("a lion", "roar"), ("an owl", "hoot"), ("a snake", "hiss"),
    ("a bee", "buzz"), ("a hen", "cluck"), ("a frog", "ribbit"), ("a mouse", "squeak"),
    ("a donkey", "hee haw"), ("a rooster", "cock a doodle doo"), ("a turkey", "gobble"),
)  # fmt: skip
_SOUND_CLASH = (("a cat", "a snake"),)  # cats hiss too

#: (question, answer) counting facts; distractors are nearby numbers.
_COUNTS: tuple[tuple[str, str], ...] = (
    ("How many legs does a spider have?", "eight"), ("How many days are there in a week?", "seven"),
    ("How many months are there in a year?", "twelve"), ("How many hours are there in a day?", "twenty four"),
    ("How many legs does a dog have?", "four"), ("How many wheels does a bicycle have?", "two"),
    ("How many sides does a triangle have?", "three"), ("How many sides does a square have?", "four"),
    ("How many minutes are there in an hour?", "sixty"), ("How many seconds are there in a minute?", "sixty"),
    ("How many legs does a bird have?", "two"), ("How many legs does an insect have?", "six"),
    ("How many fingers are there on one hand?", "five"), ("How many eyes does a person have?", "two"),
    ("How many colours are there in a rainbow?", "seven"), ("How many sides does a hexagon have?", "six"),
    ("How many sides does an octagon have?", "eight"), ("How many sides does a pentagon have?", "five"),
    ("How many wheels does a tricycle have?", "three"), ("How many arms does an octopus have?", "eight"),
    ("How many seasons are there in a year?", "four"), ("How many players are there in a football team?", "eleven"),
    ("How many things are there in a dozen?", "twelve"), ("How many days are there in a weekend?", "two"),
    ("How many toes are there on one foot?", "five"), ("How many legs does a cow have?", "four"),
    ("How many wings does a bird have?", "two"),
)  # fmt: skip

#: (animal, name of its young).
_BABIES: tuple[tuple[str, str], ...] = (
    ("dog", "a puppy"), ("cat", "a kitten"), ("cow", "a calf"), ("sheep", "a lamb"), ("horse", "a foal"),
    ("duck", "a duckling"), ("frog", "a tadpole"), ("bear", "a cub"), ("hen", "a chick"), ("goat", "a kid"),
    ("kangaroo", "a joey"), ("swan", "a cygnet"), ("pig", "a piglet"), ("goose", "a gosling"),
)  # fmt: skip

#: (country, capital).
_CAPITALS: tuple[tuple[str, str], ...] = (
    ("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin"), ("Japan", "Tokyo"),
    ("England", "London"), ("Russia", "Moscow"), ("Egypt", "Cairo"), ("China", "Beijing"),
    ("Greece", "Athens"), ("Ireland", "Dublin"), ("Portugal", "Lisbon"), ("Norway", "Oslo"),
    ("Sweden", "Stockholm"), ("Austria", "Vienna"), ("Poland", "Warsaw"), ("Kenya", "Nairobi"),
    ("Scotland", "Edinburgh"), ("the United States", "Washington"), ("Argentina", "Buenos Aires"),
    ("Denmark", "Copenhagen"), ("Finland", "Helsinki"), ("Hungary", "Budapest"), ("Thailand", "Bangkok"),
)  # fmt: skip

#: (what the person does, the person): "Who <does>?"
_JOBS: tuple[tuple[str, str], ...] = (
    ("flies a plane", "a pilot"), ("teaches children at school", "a teacher"), ("puts out fires", "a firefighter"),
    ("grows food on a farm", "a farmer"), ("bakes bread", "a baker"), ("looks after your teeth", "a dentist"),
    ("delivers letters", "a postman"), ("cuts hair", "a hairdresser"), ("cooks food in a restaurant", "a chef"),
    ("looks after sick animals", "a vet"), ("builds houses", "a builder"), ("writes books", "an author"),
    ("paints pictures", "an artist"), ("fixes leaking pipes", "a plumber"), ("sells meat", "a butcher"),
    ("catches fish for a living", "a fisherman"), ("works in a library", "a librarian"),
    ("drives a taxi", "a taxi driver"),
)  # fmt: skip

#: (what you do there, the place): "Where do you go to <do>?"
_PLACE_CLASH = (("a school", "a library"),)
_PLACES: tuple[tuple[str, str], ...] = (
    ("borrow books", "a library"), ("catch a train", "a station"), ("catch a plane", "an airport"),
    ("see wild animals from other countries", "a zoo"), ("watch a film on a big screen", "a cinema"),
    ("post a parcel", "a post office"), ("keep your money safe", "a bank"), ("buy medicine", "a chemist"),
    ("see a play", "a theatre"), ("look at old paintings", "a museum"), ("have your hair cut", "a hairdresser's"),
    ("get petrol for your car", "a petrol station"), ("swim indoors", "a swimming pool"),
    ("be treated for a broken leg", "a hospital"), ("learn to read as a child", "a school"),
)  # fmt: skip

#: (body part worn on, clothing): "What do you wear on your <part>?"
_WEAR: tuple[tuple[str, str], ...] = (("feet", "shoes"), ("head", "a hat"), ("hands", "gloves"))
_WEAR_OPTIONS = ("shoes", "a hat", "gloves", "a belt", "a necklace", "a tie")

#: (sense, body part): "Which part of the body do you use to <sense>?"
_SENSES: tuple[tuple[str, str], ...] = (
    ("hear", "your ears"), ("see", "your eyes"), ("smell", "your nose"), ("taste", "your tongue"),
    ("chew food", "your teeth"), ("think", "your brain"), ("breathe", "your lungs"), ("walk", "your legs"),
)  # fmt: skip
_SENSE_CLASH = (("your nose", "your lungs"), ("your teeth", "your tongue"))  # both take part

#: (question, answer, distractors): everyday facts, each with its own distractor list.
_FACTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Which planet do we live on?", "Earth", ("Mars", "Venus", "Jupiter", "Saturn")),
    ("What is frozen water called?", "ice", ("steam", "sand", "glass", "salt")),
    ("What do bees make?", "honey", ("milk", "silk", "butter", "wool")),
    ("What do hens lay?", "eggs", ("milk", "honey", "wool", "nuts")),
    ("What does a caterpillar turn into?", "a butterfly", ("a frog", "a bird", "a spider", "a fish")),
    ("What does a tadpole grow into?", "a frog", ("a fish", "a snake", "a butterfly", "a duck")),
    ("Which is the largest planet?", "Jupiter", ("Mars", "Earth", "Venus", "Mercury")),
    ("Which is the largest ocean?", "the Pacific", ("the Atlantic", "the Indian Ocean", "the Arctic Ocean")),
    ("Which animal is called the king of the jungle?", "the lion", ("the mouse", "the zebra", "the sheep",
     "the rabbit")),
    ("Which is the tallest animal?", "the giraffe", ("the pig", "the cat", "the fox", "the mouse")),
    ("Which is the fastest land animal?", "the cheetah", ("the tortoise", "the cow", "the sheep", "the snail")),
    ("What gives us light during the day?", "the sun", ("the moon", "the stars", "a candle", "a torch")),
    ("What do plants need from the sun to grow?", "light", ("sand", "salt", "plastic", "noise")),
    ("Where does the sun rise?", "in the east", ("in the west", "in the north", "in the south")),
    ("What do you call a house made of snow?", "an igloo", ("a tent", "a castle", "a cottage", "a barn")),
    ("What is the hottest season of the year?", "summer", ("winter", "autumn", "spring")),
    ("What is the coldest season of the year?", "winter", ("summer", "autumn", "spring")),
    ("What do you call water falling from the clouds?", "rain", ("sand", "smoke", "steam", "dust")),
    ("Which meal do you eat in the morning?", "breakfast", ("dinner", "supper", "tea")),
    ("What is the colour of a stop sign?", "red", ("green", "blue", "purple", "white")),
    ("Which gas do people need to breathe?", "oxygen", ("smoke", "helium", "steam")),
    ("What do cows eat?", "grass", ("meat", "fish", "stones", "sand")),
    ("What do you call the middle of an apple?", "the core", ("the peel", "the skin", "the stalk")),
    ("What do spiders make?", "webs", ("nests", "hives", "honey", "shells")),
    ("Where do fish live?", "in water", ("in trees", "in the desert", "in the sky", "under the ground")),
    ("Which animal has a long trunk?", "an elephant", ("a zebra", "a lion", "a monkey", "a camel")),
    ("Which animal carries its house on its back?", "a snail", ("a dog", "a rabbit", "a horse", "a duck")),
    ("How do you say hello in French?", "bonjour", ("gracias", "danke", "ciao")),
)  # fmt: skip

#: (thing, what it is made of): "What is <thing> made of?"
_MATERIALS: tuple[tuple[str, str], ...] = (
    ("a window", "glass"), ("a candle", "wax"), ("a tyre", "rubber"), ("a woolly jumper", "wool"),
    ("a brick", "clay"), ("ice", "water"), ("a newspaper", "paper"), ("a wooden table", "wood"),
    ("a cheese sandwich", "bread and cheese"), ("butter", "milk"),
)  # fmt: skip
_MATERIAL_OPTIONS = ("glass", "wax", "rubber", "wool", "clay", "water", "paper", "wood", "stone", "sand")

#: (animal, its home): "Where does <animal> live?"
_HOMES: tuple[tuple[str, str], ...] = (
    ("a camel", "in the desert"), ("a polar bear", "in the Arctic"), ("a mole", "under the ground"),
    ("a whale", "in the sea"), ("a bee", "in a hive"), ("a rabbit", "in a burrow"), ("a monkey", "in the jungle"),
    ("a penguin", "in Antarctica"), ("a bird", "in a nest"),
)  # fmt: skip
_HOME_CLASH = (("in a burrow", "under the ground"),)

#: Size, weight, speed and temperature scales: tiers from least to most, each with three or more members.
_SCALES: dict[str, tuple[tuple[str, ...], ...]] = {
    "animal size": (("an ant", "a bee", "a fly"), ("a mouse", "a frog", "a sparrow"),
                    ("a cat", "a rabbit", "a chicken"), ("a horse", "a cow", "a bear"),
                    ("an elephant", "a whale", "a giraffe")),
    "object size": (("a coin", "a button", "a pea"), ("a cup", "a book", "a shoe"),
                    ("a chair", "a bicycle", "a suitcase"), ("a car", "a van", "a piano"),
                    ("a house", "a ship", "a church")),
    "weight": (("a feather", "a leaf", "a sheet of paper"), ("an apple", "a book", "a shoe"),
               ("a chair", "a bicycle", "a television"), ("a car", "a piano", "a horse"),
               ("an elephant", "a lorry", "a train")),
    "speed": (("a snail", "a tortoise", "a worm"), ("a car", "a train", "a motorbike"),
              ("a jet plane", "a rocket", "a bullet")),
    "temperature": (("an ice cube", "snow", "a frozen pond"), ("a glass of cold water", "a cup of cold milk",
                     "a cool breeze"), ("a flame", "boiling water", "the sun")),
}  # fmt: skip
#: scale -> (more-than templates, less-than templates).
_SCALE_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "animal size": (("bigger", "larger"), ("smaller",)),
    "object size": (("bigger", "larger"), ("smaller",)),
    "weight": (("heavier",), ("lighter",)),
    "speed": (("faster",), ("slower",)),
    "temperature": (("hotter",), ("colder",)),
}


# --------------------------------------------------------------------------------------------------------
# The question bank
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    """One spoken question of the bank: its text, the options that answer it and the distractors."""

    text: str  # what is spoken (and the first line of meta.text_prompt)
    answers: tuple[str, ...]  # each item draws its correct option from these
    distractors: tuple[str, ...]  # wrong options (at least three)
    family: str
    template: str  # family/number: which phrasing produced it


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _clash_free(answer: str, pool: Iterable[str], clashes: Sequence[tuple[str, str]] = ()) -> tuple[str, ...]:
    """``pool`` without ``answer`` and without anything listed with it in ``clashes``."""
    banned = {answer} | {b for a, b in clashes if a == answer} | {a for a, b in clashes if b == answer}
    return tuple(dict.fromkeys(p for p in pool if p not in banned))


def _category_questions() -> list[Question]:
    out: list[Question] = []
    names = {c: spec[0] for c, spec in CATEGORIES.items()}
    plurals = {c: spec[1] for c, spec in CATEGORIES.items()}

    def related(c: str) -> set[str]:
        return {c, *_CATEGORY_OVERLAP.get(c, ())} | {k for k, v in _CATEGORY_OVERLAP.items() if c in v}

    for cat, (name, _, members) in CATEGORIES.items():
        others = [c for c in CATEGORIES if c not in related(cat)]
        for member in members:
            out.append(Question(f"What kind of thing is {member}?", (name,), tuple(names[c] for c in others),
                                "category", "category/1"))  # fmt: skip
            out.append(Question(f"Which group does {member} belong to?", (plurals[cat],),
                                tuple(plurals[c] for c in others), "category", "category/2"))  # fmt: skip
        outsiders = tuple(m for c in others for m in CATEGORIES[c][2])
        for i, template in enumerate(("Which of these is {}?", "Which one of these is {}?",
                                      "Which of the following is {}?"), 1):  # fmt: skip
            out.append(Question(template.format(name), members, outsiders, "membership", f"membership/{i}"))
        out.append(
            Question(f"Which of these is not {name}?", outsiders, members, "membership", "membership/4")
        )
    return out


def _synonym_free(word: str, answer: str, pool: Iterable[str]) -> tuple[str, ...]:
    near = {w for g in _SYNONYMS if answer in g or word in g for w in g}
    return tuple(dict.fromkeys(p for p in pool if p not in near and p not in (word, answer)))


def _opposite_questions() -> list[Question]:
    pairs: dict[str, str] = {}
    for a, b in _OPPOSITES:
        for word, opposite in ((a, b), (b, a)):
            if word not in _ONE_WAY and word not in pairs:
                pairs[word] = opposite
    words = tuple(dict.fromkeys(w for pair in _OPPOSITES for w in pair))
    templates = ("What is the opposite of {}?", "What word means the opposite of {}?",
                 "Which word is the opposite of {}?")  # fmt: skip
    return [
        Question(
            t.format(word), (opposite,), _synonym_free(word, opposite, words), "opposites", f"opposites/{i}"
        )
        for word, opposite in pairs.items()
        for i, t in enumerate(templates, 1)
    ]


def _near_numbers(n: int) -> tuple[str, ...]:
    return tuple(
        NUMBER_WORDS[m] for m in (n - 1, n + 1, n - 2, n + 2, n - 3, n + 3) if 0 <= m < len(NUMBER_WORDS)
    )


def _arithmetic_questions() -> list[Question]:
    out: list[Question] = []
    w = NUMBER_WORDS
    for a in range(1, 11):
        for b in range(1, 11):
            out.append(Question(f"What is {w[a]} plus {w[b]}?", (w[a + b],), _near_numbers(a + b),
                                "arithmetic", "arithmetic/plus"))  # fmt: skip
            if a <= b and a + b <= 12:
                out.append(Question(f"What do you get if you add {w[a]} and {w[b]}?", (w[a + b],),
                                    _near_numbers(a + b), "arithmetic", "arithmetic/add"))  # fmt: skip
    for a in range(2, 13):
        for b in range(1, a):
            out.append(Question(f"What is {w[a]} minus {w[b]}?", (w[a - b],), _near_numbers(a - b),
                                "arithmetic", "arithmetic/minus"))  # fmt: skip
            if a <= 10:
                out.append(Question(f"If you have {w[a]} apples and eat {w[b]}, how many are left?",
                                    (w[a - b],), _near_numbers(a - b), "arithmetic", "arithmetic/left"))  # fmt: skip
    for a in range(2, 6):
        for b in range(2, 6):
            out.append(Question(f"What is {w[a]} times {w[b]}?", (w[a * b],), _near_numbers(a * b),
                                "arithmetic", "arithmetic/times"))  # fmt: skip
    for a in (2, 4, 6, 8, 10, 12, 14, 16, 18, 20):
        out.append(Question(f"What is half of {w[a]}?", (w[a // 2],), _near_numbers(a // 2), "arithmetic",
                            "arithmetic/half"))  # fmt: skip
    return out


def _comparison_questions() -> list[Question]:
    out: list[Question] = []
    for scale, tiers in _SCALES.items():
        more_words, less_words = _SCALE_WORDS[scale]
        for t, tier in enumerate(tiers):
            above = tuple(m for tr in tiers[t + 1 :] for m in tr)
            below = tuple(m for tr in tiers[:t] for m in tr)
            for thing in tier:
                if above and len(below) >= 3:
                    for word in more_words:
                        out.append(Question(f"Which of these is {word} than {thing}?", above, below,
                                            "comparison", f"comparison/{word}"))  # fmt: skip
                if below and len(above) >= 3:
                    for word in less_words:
                        out.append(Question(f"Which of these is {word} than {thing}?", below, above,
                                            "comparison", f"comparison/{word}"))  # fmt: skip
    return out


def _pair_questions(
    family: str,
    pairs: Sequence[tuple[str, str]],
    templates: Sequence[str],
    options: Sequence[str] | None = None,
    clashes: Sequence[tuple[str, str]] = (),
) -> list[Question]:
    """One question per (pair, template): ``template.format(key)`` -> the pair's value, distractors the
    other values (or ``options``)."""
    pool = tuple(options) if options is not None else tuple(dict.fromkeys(v for _, v in pairs))
    return [
        Question(_cap(t.format(key)), (value,), _clash_free(value, pool, clashes), family, f"{family}/{i}")
        for key, value in pairs
        for i, t in enumerate(templates, 1)
    ]


def _sequence_questions() -> list[Question]:
    out: list[Question] = []
    days, months = CATEGORIES["weekday"][2], CATEGORIES["month"][2]
    for kind, seq in (("day", days), ("month", months)):
        for i, item in enumerate(seq):
            after, before = seq[(i + 1) % len(seq)], seq[i - 1]
            out.append(Question(f"Which {kind} comes after {item}?", (after,), _clash_free(after, seq, [(after, item)]),
                                "sequence", f"sequence/{kind}-after"))  # fmt: skip
            out.append(Question(f"Which {kind} comes before {item}?", (before,),
                                _clash_free(before, seq, [(before, item)]), "sequence", f"sequence/{kind}-before"))  # fmt: skip
    for n in range(1, 20):
        out.append(Question(f"Which number comes after {NUMBER_WORDS[n]}?", (NUMBER_WORDS[n + 1],),
                            _clash_free(NUMBER_WORDS[n + 1], _near_numbers(n + 1), [(NUMBER_WORDS[n + 1], NUMBER_WORDS[n])]),
                            "sequence", "sequence/number-after"))  # fmt: skip
    return out


def _count_questions() -> list[Question]:
    return [
        Question(
            text,
            (answer,),
            _near_numbers(NUMBER_WORDS.index(answer))
            if answer in NUMBER_WORDS
            else _clash_free(answer, _TENS),
            "counting",
            "counting/1",
        )
        for text, answer in _COUNTS
    ]


def _fact_questions() -> list[Question]:
    return [Question(text, (answer,), wrong, "facts", "facts/1") for text, answer, wrong in _FACTS]


@lru_cache(maxsize=1)
def question_bank() -> tuple[Question, ...]:
    """Every question, in a fixed order; the first question of a spoken text wins (texts are unique)."""
    questions = [
        *_category_questions(),
        *_opposite_questions(),
        *_arithmetic_questions(),
        *_comparison_questions(),
        *_pair_questions(
            "uses",
            _USES,
            ("What do you use to {}?", "Which of these do you use to {}?", "What would you use to {}?"),
            clashes=_USE_CLASH,
        ),
        *_pair_questions(
            "colours", _COLOURS, ("What colour is {}?", "What is the colour of {}?"), _COLOUR_NAMES
        ),
        *_pair_questions(
            "animal sounds",
            [(s, a) for a, s in _ANIMAL_SOUNDS],
            ("Which animal says {}?", "Which animal goes {}?"),
            clashes=_SOUND_CLASH,
        ),
        *_pair_questions(
            "animal sounds",
            _ANIMAL_SOUNDS,
            ("What sound does {} make?", "What does {} say?"),
            clashes=(("meow", "hiss"),),
        ),
        *_count_questions(),
        *_pair_questions(
            "babies",
            _BABIES,
            ("What is a baby {} called?", "What do you call a baby {}?"),
        ),
        *_sequence_questions(),
        *_pair_questions(
            "capitals", _CAPITALS, ("What is the capital of {}?", "Which city is the capital of {}?")
        ),
        *_pair_questions("jobs", _JOBS, ("Who {}?", "What do you call a person who {}?")),
        *_pair_questions(
            "places", _PLACES, ("Where do you go to {}?", "Where would you go to {}?"), clashes=_PLACE_CLASH
        ),
        *_pair_questions("body", _WEAR, ("What do you wear on your {}?",), _WEAR_OPTIONS),
        *_pair_questions(
            "body", _SENSES, ("Which part of the body do you use to {}?",), clashes=_SENSE_CLASH
        ),
        *_fact_questions(),
        *_pair_questions("materials", _MATERIALS, ("What is {} made of?",), _MATERIAL_OPTIONS),
        *_pair_questions("homes", _HOMES, ("Where does {} live?",), clashes=_HOME_CLASH),
    ]
    bank: dict[str, Question] = {}
    for q in questions:
        if len(set(q.distractors) - set(q.answers)) < 3:
            raise ValueError(f"question {q.text!r} has fewer than three distractors")
        bank.setdefault(q.text, q)
    return tuple(bank.values())


# --------------------------------------------------------------------------------------------------------
# Splits and drawing
# --------------------------------------------------------------------------------------------------------

#: Percent of the question pool per split (by a stable hash of the spoken text).
QA_SPLIT_PERCENT: dict[str, int] = {"train": 80, "valid": 10, "test": 10}


def stable_split(text: str, percent: dict[str, int]) -> str:
    """The split a text belongs to: SHA-256 of its UTF-8 bytes, mod 100, against the split percentages
    (in the dict's order). Independent of the seed, Python's hash salt and the platform."""
    bucket = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") % 100
    edge = 0
    for split, share in percent.items():
        edge += share
        if bucket < edge:
            return split
    raise ValueError(f"split percentages {percent} do not add up to 100")


@cache
def split_pool(split: str) -> dict[str, tuple[Question, ...]]:
    """family -> the split's questions of that family (families with none are left out)."""
    pools: dict[str, list[Question]] = {}
    for q in question_bank():
        if stable_split(q.text, QA_SPLIT_PERCENT) == split:
            pools.setdefault(q.family, []).append(q)
    return {f: tuple(qs) for f, qs in pools.items()}


def draw_question(
    rng: np.random.Generator, split: str, position: int | None = None
) -> tuple[Question, str, list[str]]:
    """A question of ``split`` (family weighted by the square root of its size), its correct option and
    the four options: the correct one at ``position`` (0-3) with the distractors shuffled around it, or,
    without ``position``, all four shuffled."""
    pools = split_pool(split)
    families = list(pools)
    weights = np.array([math.sqrt(len(pools[f])) for f in families])
    family = families[int(rng.choice(len(families), p=weights / weights.sum()))]
    q = pools[family][int(rng.integers(len(pools[family])))]
    answer = str(q.answers[int(rng.integers(len(q.answers)))])
    wrong = [d for d in q.distractors if d != answer]
    picked = [wrong[i] for i in rng.choice(len(wrong), size=3, replace=False)]
    if position is None:
        options = [answer, *picked]
        return q, answer, [options[i] for i in rng.permutation(4)]
    options = [picked[i] for i in rng.permutation(3)]
    options.insert(position, answer)
    return q, answer, options


# --------------------------------------------------------------------------------------------------------
# The item
# --------------------------------------------------------------------------------------------------------

#: Longest clip (s); the longest questions at the slowest rate stay well under it.
SPOKEN_QA_MAX_S = 8.0
#: What the item's instruction says before the options (the question itself is only in the audio).
SPOKEN_QA_LEAD = "Answer the spoken question."
#: Its text-modality counterpart (``meta.text_instruction``), so both modalities ask alike.
TEXT_QA_LEAD = "Answer the question."


def text_prompt(question: str, choices: list[str]) -> str:
    """The text form of a spoken question: the question, then the options as the audio item shows them."""
    return f"{question}\n{format_choices(choices)}"


def _make_spoken_qa(rng: np.random.Generator, spec: _Spec) -> _Made:
    """A question of the item's split, spoken by a voice of that split; the options are text.

    ``target`` is the correct option's text and ``answer`` its letter (the project's MCQ convention, as
    in :func:`~moeaudio.data.synth.mcq._make_mcq`); ``meta.spoken_text`` is what was said and
    ``meta.text_prompt`` the same question in writing; ``meta.text_instruction`` is the whole prompt
    ``moeaudio eval --modality text`` sends (worded as the audio item's instruction). The
    planner's label is the correct option's letter (round-robin over a shuffled A-D, as class labels are),
    so each split has the four positions equally often (within one).
    """
    drawn: dict[str, Any] = {}
    position = "ABCD".index(spec.label) if spec.label else None

    def draw(r: np.random.Generator) -> tuple[str, dict[str, Any]]:
        q, answer, choices = draw_question(r, spec.split, position)
        drawn.update(question=q, answer=answer, choices=choices)
        return q.text, {"text_kind": "question", "family": q.family, "template": q.template}

    audio, text, _, meta = _speak(rng, spec.split, "question", text_fn=draw, max_s=SPOKEN_QA_MAX_S)
    choices, answer = drawn["choices"], drawn["answer"]
    written = text_prompt(text, choices)
    meta = {
        **meta,
        "spoken_text": text,
        "text_prompt": written,
        # the whole prompt of the text modality: the audio item's instruction with the question written in
        "text_instruction": f"{TEXT_QA_LEAD}\n{written}\n{_MCQ_SUFFIX}",
        "choices_in_audio": False,
    }
    made = _Made(audio, answer, meta, speaker=meta["voice"], lang="en")
    made.instruction = f"{SPOKEN_QA_LEAD}\n{format_choices(choices)}\n{_MCQ_SUFFIX}"
    made.choices = choices
    made.answer = "ABCD"[choices.index(answer)]
    return made
