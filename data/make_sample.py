"""Generate the small news-headline sample shipped in ``data/sample/``.

Why this exists
---------------
The real AG News corpus is large, has to be downloaded, and is licensed for
research and non-commercial use only, so it cannot be bundled here.  The test
suite and the default (offline) profile still need something that *looks* like
AG News: the same four topics and the same CSV layout.  This script builds that
stand-in from hand-written building blocks (story templates plus fictional
names of people, countries, cities, teams and companies) written for this
project.  No AG News text, and no text from any real news source, is copied.

Why it is hard on purpose
-------------------------
A sample of clean single-topic stories is too easy: a pretrained encoder scores
100% on it, and the book then shows no confusions, an empty table of confident
mistakes and a meaningless reliability diagram.  Real AG News is hard because
many stories sit between two topics and were labelled inconsistently.  So about
28% of the rows come from *crossover* families (``CROSSOVER``): technology
companies' business (Business/Sci-Tech), the business of sport
(Business/Sports), the world economy (World/Business) and technology or health
in world affairs (World/Sci-Tech).  Each family's label is drawn between its two
topics with a fixed share (70/30 or 65/35), and its wording leans only weakly
toward the label drawn (``LEAN``).  The same company names, countries and clubs
appear in clear and crossover stories of different topics.  The rest of the
rows are clear single-topic stories.

The generator's own bookkeeping gives the Bayes-optimal accuracy: a classifier
that knows every family, wording pool and share can do no better than 1 minus
the sum over families of (fraction of rows) x (minority share), 91.1% by design
and 91.25% on the test rows actually drawn.  ``main`` prints it.

Output (paths are resolved relative to this file, never the working directory):

* ``sample/train.csv``: 640 rows, 160 per class
* ``sample/test.csv``:  400 rows, 100 per class

Layout is that of the original AG News CSVs: no header row, three columns
``label,title,description``, every field double-quoted, label an integer
1=World, 2=Sports, 3=Business, 4=Sci/Tech.  Rows are shuffled.

The script uses only the standard library and a fixed seed, so running it again
produces byte-identical files.  Usage::

    python data/make_sample.py
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

SEED = 20240611
OUT_DIR = Path(__file__).resolve().parent / "sample"
N_TRAIN_PER_CLASS = 160
N_TEST_PER_CLASS = 100
LABELS = {1: "World", 2: "Sports", 3: "Business", 4: "Sci/Tech"}

TITLE_WORDS = (4, 12)
DESC_WORDS = (15, 45)

# ---------------------------------------------------------------------------
# Slot fillers: all names are invented for this project.
# ---------------------------------------------------------------------------

# (country, adjective, capital)
COUNTRIES = [
    ("Valdoria", "Valdorian", "Rellin"),
    ("Kestria", "Kestrian", "Vorlund"),
    ("Marovia", "Marovian", "Sazan"),
    ("Tarsenia", "Tarsenian", "Ivrel"),
    ("Belmora", "Belmoran", "Castrel"),
    ("Drovania", "Drovanian", "Mirsk"),
    ("Gavrilia", "Gavrilian", "Nessa"),
    ("Halvania", "Halvanian", "Tobrin"),
    ("Istrana", "Istranan", "Korvel"),
    ("Lunaria", "Lunarian", "Selva"),
    ("Meridia", "Meridian", "Port Calder"),
    ("Norvala", "Norvalan", "Eskar"),
    ("Orlesia", "Orlesian", "Valbrook"),
    ("Pellavia", "Pellavian", "Dunmere"),
    ("Quarnia", "Quarnian", "Harsk"),
    ("Rostavia", "Rostavian", "Belgrath"),
    ("Sarnova", "Sarnovan", "Lisk"),
    ("Tolvania", "Tolvanian", "Tiravel"),
    ("Ulmaria", "Ulmarian", "Kessen"),
    ("Zerovia", "Zerovian", "Amadra"),
    ("Corvania", "Corvanian", "Brask"),
    ("Almira", "Almiran", "Santel"),
]

CITIES = [
    "Brenholm", "Port Alder", "Velmar", "Karsk", "Lunetta", "Ashford Bay",
    "Corran", "Deverly", "Eastmoor", "Fallowmere", "Greyhaven", "Harlow Point",
    "Ironbridge", "Juniper Falls", "Lakemont", "Millbrook", "Northgate",
    "Oakridge", "Pinecrest", "Riverton", "Sable Creek", "Thornbury",
    "Westcliff", "Yarrow",
]

# First names are split so that rivals in one sporting event share a gender.
FIRST_NAMES_F = [
    "Elena", "Sofia", "Irena", "Nadia", "Clara", "Mira", "Hana", "Lena",
    "Ines", "Aisha", "Yuki", "Greta", "Freya", "Zora", "Talia", "Nina",
    "Amara", "Lucia", "Maren", "Rosa",
]
FIRST_NAMES_M = [
    "Anton", "Marek", "Tomas", "Luca", "Pavel", "Jonas", "Viktor", "Oskar",
    "Rafael", "Dmitri", "Kofi", "Samir", "Mateo", "Idris", "Emil", "Bruno",
    "Felix", "Stefan", "Andrei", "Caleb",
]

LAST_NAMES = [
    "Kovar", "Varga", "Lindqvist", "Moreau", "Okafor", "Tanaka", "Petrov",
    "Haddad", "Brennan", "Castillo", "Novak", "Albrecht", "Mensah", "Rossi",
    "Sandoval", "Halloran", "Dragan", "Eriksen", "Ferreira", "Grimaldi",
    "Ivanek", "Jansen", "Kalnins", "Lorenz", "Marchetti", "Nakamura",
    "Osei", "Pereira", "Quist", "Rahman", "Stavros", "Toivonen", "Ulrich",
    "Vance", "Whitcombe", "Zeller", "Abernathy", "Bakker", "Demir", "Falk",
]

PARTIES = [
    "Democratic Renewal Party", "National Unity Front", "Green Alliance",
    "People's Movement", "Liberal Union", "Social Progress Party",
    "Farmers' League", "New Horizon Party", "Workers' Congress",
    "Centre Reform Party", "Citizens' Alliance", "Republican Union",
]

FOOTBALL_CLUBS = [
    "Brenholm Rovers", "Port Alder Athletic", "Velmar City", "Karsk United",
    "Lunetta FC", "Corran Albion", "Deverly Town", "Eastmoor Wanderers",
    "Fallowmere Rangers", "Greyhaven Harriers", "Thornbury Rovers",
    "Westcliff Villa", "Riverton Town", "Yarrow Athletic", "Sable Creek FC",
    "Juniper Falls United",
]

BASKETBALL_TEAMS = [
    "Millbrook Hawks", "Northgate Comets", "Oakridge Bison", "Pinecrest Falcons",
    "Lakemont Storm", "Harlow Point Pilots", "Ashford Bay Sharks",
    "Ironbridge Titans", "Corran Lynx", "Velmar Vipers", "Deverly Knights",
    "Karsk Kodiaks",
]

BASEBALL_TEAMS = [
    "Ironbridge Miners", "Juniper Falls Pioneers", "Ashford Bay Gulls",
    "Riverton Sentinels", "Sable Creek Owls", "Westcliff Mariners",
    "Greyhaven Foxes", "Eastmoor Badgers", "Thornbury Rams", "Yarrow Herons",
    "Lunetta Lumberjacks", "Fallowmere Comets",
]

TENNIS_EVENTS = [
    "the Greyhaven Open", "the Port Alder Championships", "the Millbrook Masters",
    "the Velmar Indoor Open", "the Lakemont Classic", "the Riverton Trophy",
]

GOLF_EVENTS = [
    "the Pinecrest Classic", "the Harbour Links Championship",
    "the Oakridge Invitational", "the Corran Masters", "the Sable Creek Open",
    "the Westcliff Pro-Am",
]

SWIM_EVENTS = [
    "200m freestyle", "100m butterfly", "400m medley", "100m backstroke",
    "200m breaststroke", "1500m freestyle",
]

COMPANIES = [
    "Halcyon Foods", "Norvik Steel", "Bluewater Energy", "Corran Mutual",
    "Apex Home Group", "Stellan Chemicals", "Greyline Logistics",
    "Pinnacle Pharmaceuticals", "Kestrel Paper", "Ironbridge Holdings",
    "Sunvale Brewing", "Tidewater Shipping", "Marlow Textiles",
    "Vantor Engineering", "Brightwell Appliances", "Castlerock Cement",
    "Harbourside Media", "Orland Packaging", "Westmark Insurance",
    "Granite Peak Mining",
]

RETAILERS = [
    "Brightmart", "Calloway Stores", "ValueCorner", "Penbury's",
    "Hollis & Vane", "Marigold Department Stores", "Northway Retail",
    "Thrifton",
]

AIRLINES = [
    "Meridian Airways", "Skyvale Airlines", "Northwind Air", "BlueCrest Airlines",
    "Atlas Coast Airways", "Silverwing", "Orlesia Air", "Pelican Jet",
]

BANKS = [
    "Oakridge Bank", "Harbour Savings Bank", "First Kestrian Bank",
    "Union Bank of Norvala", "Castrel Commercial Bank", "Lakemont Trust",
]

AUTOMAKERS = [
    "Stellan Motors", "Veloce Automotive", "Ardent Motor Company",
    "Kovar Autoworks", "Nordkap Motors", "Brisa Cars",
]

UNIONS = [
    "Industrial Workers Union", "National Allied Trades Union",
    "United Factory Workers", "General Workers Federation",
    "Manufacturing and Services Union",
]

INDEXES = [
    "Rellin Composite index", "Castrel All-Share index", "Eskar 40 index",
    "Norvala 100 index", "Mirsk Blue Chip index", "Port Calder General index",
]

TECH_COS = [
    "Quantix", "Nimbus Systems", "Pixelforge", "Veridian Labs", "Sparkwave",
    "Helix Software", "Tessellate", "Corvid Computing",
]

INTERNET_COS = [
    "Brightpath Online", "Zentro", "Kitefin", "Searchlight", "Weblane",
    "Orbitline", "Quillmark", "Netherby",
]

CHIPMAKERS = [
    "Cobalt Semiconductor", "Siltrex", "Arcadia Micro", "Novachip",
    "Tessel Devices", "Quartzline", "Ferrox Micro", "Brindle Silicon",
]

TELECOMS = [
    "Redfern Telecom", "Norvala Mobile", "Kestria Telecom", "SignalOne",
    "Bluewave Communications", "Teleport Mobile",
]

PHARMA = [
    "Pinnacle Pharmaceuticals", "Corvella Therapeutics", "Halden Biotech",
    "Nuvaris Pharma", "Greyfield Labs",
]

ILLNESSES = ["Alzheimer's disease", "Parkinson's disease", "arthritis",
             "kidney disease", "liver disease", "muscular dystrophy"]

BROADCASTERS = [
    "Vistacast", "Northstar Television", "Skyreach TV", "Harbourside Media",
    "Channel Meridia",
]

CURRENCY_UNITS = ["crown", "mark", "florin", "thaler", "ducat"]

SECURITY_COS = [
    "Shieldpoint", "Vigilant Software", "Castle Antivirus", "Sentrix Labs",
    "Bastion Security",
]

MALWARE = ["Grimbot", "Netslug", "Lurker", "Bagpipe", "Zorbo", "Kettlecrash",
           "Mimicry", "Sandfly"]

OS_NAMES = ["Skyline", "Horizon", "Keystone", "Aurora", "Summit", "Meadow"]
OS_VERSIONS = ["2.0", "3.1", "4", "5.5", "6", "7.2"]

UNIVERSITIES = [
    "the University of Brenholm", "Lakemont University", "Velmar University",
    "Northgate University", "the University of Port Alder",
    "the Riverton Institute", "Greyhaven University",
]

PROBES = ["Pathseeker", "Lantern", "Farsight", "Wayfinder", "Tern", "Kestrel-1"]

# (target, travel time)
TARGETS = [
    ("Mars", "seven months"), ("Jupiter", "five years"),
    ("Saturn", "seven years"), ("Venus", "five months"),
    ("Mercury", "six years"), ("a near-Earth asteroid", "two years"),
]

SPACEPORTS = ["Cape Dunmore", "Kessen", "Brask", "Port Calder"]

BROWSERS = ["Skylark", "Wayfarer", "Compass", "Voyant", "Lookout"]

# (kind, possible screen sizes in inches)
GADGETS = [
    ("smartphone", ["3.5", "4", "4.3"]),
    ("music player", ["2.5", "3", "3.5"]),
    ("tablet", ["7", "9.7", "10.1"]),
    ("e-book reader", ["6", "6.8", "8"]),
    ("digital camera", ["2.7", "3", "3.2"]),
]
GADGET_NAMES = ["Lumo 3", "Flare X", "Axis 2", "Nova Mini", "Orbit 5",
                "Pulse One", "Vista S"]

TRAITS = ["lifespan", "body weight", "sleep patterns", "bone strength",
          "appetite", "memory"]
LAB_ANIMALS = ["mice", "fruit flies", "zebrafish", "roundworms", "rats"]
DISEASES = ["malaria", "dengue fever", "bird flu", "tuberculosis", "rabies"]

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
        "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July",
          "August", "September", "October", "November", "December"]
QUARTERS = ["first-quarter", "second-quarter", "third-quarter",
            "fourth-quarter"]

NUM_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven",
             "eight", "nine", "ten"]
ORD_WORDS = ["zeroth", "first", "second", "third", "fourth", "fifth", "sixth",
             "seventh", "eighth", "ninth", "tenth"]


def ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def two_distinct(rng: random.Random, pool: list):
    a, b = rng.sample(pool, 2)
    return a, b


def make_slots(rng: random.Random, names: str | None = None) -> dict[str, str]:
    """Draw one consistent set of slot values for a single item.

    ``names="m"`` restricts people to male first names (for a story set in a
    men's league); otherwise one gender is drawn for all people in the item.
    """
    s: dict[str, str] = {}
    (c1, c1a, cap1), (c2, c2a, cap2) = two_distinct(rng, COUNTRIES)
    s.update(country=c1, country_adj=c1a, capital=cap1,
             country2=c2, country2_adj=c2a, capital2=cap2)
    s["city"], s["city2"] = two_distinct(rng, CITIES)
    if names == "m":
        first_names = FIRST_NAMES_M
    else:
        first_names = rng.choice([FIRST_NAMES_F, FIRST_NAMES_M])
    firsts = rng.sample(first_names, 4)
    lasts = rng.sample(LAST_NAMES, 4)
    people = [f"{f} {l}" for f, l in zip(firsts, lasts)]
    s["person"], s["person2"], s["player"], s["player2"] = people
    s["leader_title"] = rng.choice(["President", "Prime Minister"])
    s["party"] = rng.choice(PARTIES)
    s["day"] = rng.choice(DAYS)
    s["wday"] = rng.choice(DAYS[:5])  # trading days, for market stories
    s["month"] = rng.choice(MONTHS)
    s["n_word"] = NUM_WORDS[rng.randint(2, 9)]
    s["n_small"] = NUM_WORDS[rng.randint(3, 9)]
    s["n_killed"] = str(rng.randint(6, 48))
    s["n_years"] = NUM_WORDS[rng.randint(2, 5)]
    s["n_few"] = NUM_WORDS[rng.randint(2, 4)]
    s["n_rescued"] = str(rng.randint(12, 90))
    s["n_boats"] = NUM_WORDS[rng.randint(3, 9)]
    s["n_stations"] = str(rng.randint(20, 300))
    s["num_k"] = f"{rng.randint(8, 95) * 1000:,}"
    s["pct"] = f"{rng.randint(5, 95) / 10:.1f}"
    s["inflation"] = f"{rng.randint(40, 95) / 10:.1f}"
    s["pct_small"] = f"{rng.randint(3, 29) / 10:.1f}"
    s["pay"] = f"{rng.randint(15, 45) / 10:.1f}"
    s["pct2"] = f"{rng.randint(5, 60) / 10:.1f}"
    s["pct_int"] = str(rng.randint(8, 45))
    s["money_m"] = f"${rng.randint(12, 950)} million"
    s["money_s"] = f"${rng.randint(4, 60)} million"
    s["money_b"] = f"${rng.randint(11, 95) / 10:.1f} billion"
    s["jobs"] = f"{rng.randint(3, 60) * 100:,}"
    s["age"] = str(rng.randint(20, 34))
    s["magnitude"] = f"{rng.randint(58, 76) / 10:.1f}"
    s["turnout"] = str(rng.randint(41, 82))
    total = rng.choice([150, 200, 240, 300, 360])
    s["total_seats"] = str(total)
    s["seats"] = str(total // 2 + rng.randint(1, 35))
    s["n_wkts"] = NUM_WORDS[rng.randint(3, 9)]

    # Sports
    s["club"], s["club2"] = two_distinct(rng, FOOTBALL_CLUBS)
    s["bteam"], s["bteam2"] = two_distinct(rng, BASKETBALL_TEAMS)
    s["bbteam"], s["bbteam2"] = two_distinct(rng, BASEBALL_TEAMS)
    s["fscore"] = rng.choice(["2-1", "3-2", "2-1", "3-2", "4-3"])
    s["fscore_win"] = rng.choice(["1-0", "2-0", "2-1", "3-1", "3-0", "4-2"])
    s["late_minute"] = ordinal(rng.randint(80, 90))
    b_win = rng.randint(88, 121)
    s["bscore"] = f"{b_win}-{b_win - rng.randint(1, 9)}"
    bb_win = rng.randint(2, 8)
    s["bbscore"] = f"{bb_win}-{bb_win - 1}"
    s["points"] = str(rng.randint(24, 46))
    s["rebounds"] = str(rng.randint(6, 17))
    s["deficit"] = str(rng.randint(9, 21))
    streak = rng.randint(4, 9)
    s["streak"] = NUM_WORDS[streak]
    s["streak_ord"] = ORD_WORDS[streak]
    s["fee_m"] = str(rng.randint(4, 38))
    s["goals"] = str(rng.randint(11, 29))
    s["n_weeks"] = NUM_WORDS[rng.randint(4, 10)]
    s["n_losses"] = NUM_WORDS[rng.randint(5, 7)]
    s["tennis_event"] = rng.choice(TENNIS_EVENTS)
    s["tset1"] = rng.choice(["6-3", "6-4", "7-5", "6-2", "7-6"])
    s["tset2"] = rng.choice(["6-4", "6-1", "7-6", "6-3", "7-5"])
    s["runs"] = str(rng.randint(101, 168))
    s["target"] = str(rng.randint(210, 340))
    s["collapse"] = str(rng.randint(98, 189))
    s["swim_event"] = rng.choice(SWIM_EVENTS)
    s["golf_event"] = rng.choice(GOLF_EVENTS)
    shots = rng.randint(2, 6)
    s["shots"] = NUM_WORDS[shots]
    s["golf_score"] = str(rng.randint(63, 68))
    s["under"] = str(rng.randint(9, 21))
    s["birdies"] = NUM_WORDS[rng.randint(3, 6)]
    s["cycling_race"] = f"the Tour of {c2}"
    s["stage"] = str(rng.randint(3, 18))
    s["gap"] = str(rng.randint(8, 75))
    s["marathon_time"] = f"2:{rng.randint(5, 11):02d}:{rng.randint(0, 59):02d}"
    s["n_decades"] = NUM_WORDS[rng.randint(2, 6)]

    # Business
    s["company"], s["company2"] = two_distinct(rng, COMPANIES)
    # Shared entities: clear business stories about strikes and bankruptcies
    # sometimes name a technology company, so a name alone does not decide.
    if rng.random() < 0.3:
        s["firm"] = rng.choice(TECH_COS + INTERNET_COS + CHIPMAKERS + TELECOMS)
    else:
        s["firm"] = s["company"]
    s["pharma"] = rng.choice(PHARMA)
    s["illness"] = rng.choice(ILLNESSES)
    s["broadcaster"] = rng.choice(BROADCASTERS)
    s["currency"] = f"the {c1a} {rng.choice(CURRENCY_UNITS)}"
    s["league"] = f"the {c1a} Premier Division"
    s["retailer"] = rng.choice(RETAILERS)
    s["breach_co"] = rng.choice(RETAILERS + BANKS + AIRLINES)
    s["airline"] = rng.choice(AIRLINES)
    s["bank"] = rng.choice(BANKS)
    s["automaker"] = rng.choice(AUTOMAKERS)
    s["union"] = rng.choice(UNIONS)
    s["index_name"] = rng.choice(INDEXES)
    s["index_level"] = f"{rng.randint(2100, 12900):,}.{rng.randint(0, 99):02d}"
    s["quarter"] = rng.choice(QUARTERS)
    s["rate"] = f"{rng.randint(5, 26) * 0.25:.2f}"
    oil_int = rng.randint(38, 94)
    s["oil_int"] = str(oil_int)
    s["oil_price"] = f"{oil_int}.{rng.randint(10, 99)}"
    s["oil_move"] = str(rng.randint(22, 99))
    s["n_stores"] = str(rng.randint(12, 140))

    # Sci/Tech
    s["tech_co"], s["tech_co2"] = two_distinct(rng, TECH_COS)
    s["net_co"], s["net_co2"] = two_distinct(rng, INTERNET_COS)
    s["chipmaker"] = rng.choice(CHIPMAKERS)
    s["telecom"] = rng.choice(TELECOMS)
    s["sec_co"] = rng.choice(SECURITY_COS)
    s["malware"] = rng.choice(MALWARE)
    s["os_name"] = rng.choice(OS_NAMES)
    s["version"] = rng.choice(OS_VERSIONS)
    s["university"] = rng.choice(UNIVERSITIES)
    s["probe"] = rng.choice(PROBES)
    s["target_body"], s["travel"] = rng.choice(TARGETS)
    s["spaceport"] = rng.choice(SPACEPORTS)
    s["browser"] = rng.choice(BROWSERS)
    kind, screens = rng.choice(GADGETS)
    s["gadget_kind"] = kind
    s["screen"] = rng.choice(screens)
    s["gadget_name"] = rng.choice(GADGET_NAMES)
    s["price"] = f"${rng.choice([99, 149, 199, 249, 299, 349, 399, 499])}"
    s["storage"] = rng.choice(["1 gigabyte", "2 gigabytes", "5 gigabytes",
                               "10 gigabytes"])
    s["trait"] = rng.choice(TRAITS)
    s["animal"] = rng.choice(LAB_ANIMALS)
    s["disease"] = rng.choice(DISEASES)
    s["n_cores"] = rng.choice(["two", "four", "eight"])
    s["nm"] = rng.choice(["90", "65", "45", "32"])
    s["n_days"] = str(rng.randint(150, 215))
    s["n_crew"] = NUM_WORDS[rng.randint(2, 3)]
    s["n_hours"] = str(rng.randint(6, 48))
    s["n_km"] = str(rng.randint(18, 30) * 10)
    s["mya"] = str(rng.randint(70, 160))
    s["length"] = str(rng.randint(12, 34))
    return s


# ---------------------------------------------------------------------------
# Story templates.  Every title in a story fits every description in it.
# ---------------------------------------------------------------------------

WORLD = [
    {"titles": [
        "{country} and {country2} agree to resume border talks",
        "{country_adj} and {country2_adj} ministers to restart frontier negotiations",
        "Neighbours {country} and {country2} return to table over border",
    ], "descs": [
        "Foreign ministers from the two neighbours said on {day} that negotiations "
        "over the disputed frontier would restart in {month}, ending a freeze that "
        "began after a clash between border guards.",
        "Talks on the contested river valley collapsed {n_word} years ago. Diplomats "
        "in {capital} said both sides had agreed to drop preconditions and let a "
        "joint commission map the boundary.",
    ]},
    {"titles": [
        "{country2} recalls ambassador from {country} in spying row",
        "{country} expels {country2_adj} diplomats over espionage claims",
        "Spy row sours ties between {country} and {country2}",
    ], "descs": [
        "Officials in {capital} accused {n_word} embassy staff of gathering "
        "information on military sites, a charge the {country2_adj} government "
        "rejected as baseless and politically motivated.",
        "The dispute marks the worst rupture between the two governments in a "
        "decade. A foreign ministry spokesman in {capital2} said a response would "
        "follow within days.",
    ]},
    {"titles": [
        "{party} claims victory in {country_adj} parliamentary election",
        "{country} opposition party wins snap election",
        "Voters in {country} hand {party} parliamentary majority",
    ], "descs": [
        "Official results released on {day} gave the {party} {seats} of the "
        "{total_seats} seats in parliament, and its leader {person} said a new "
        "cabinet would be named within weeks.",
        "Turnout was reported at {turnout} percent. {person}, who campaigned on "
        "cutting fuel prices and fighting corruption, is expected to be sworn in "
        "as prime minister in {capital} next week.",
    ]},
    {"titles": [
        "Protesters in {capital} reject disputed presidential vote",
        "Thousands rally in {country} over alleged election fraud",
        "{country_adj} opposition demands recount after presidential poll",
    ], "descs": [
        "Demonstrators gathered outside the electoral commission in {capital} on "
        "{day}, saying ballots had been stuffed in rural districts. Police used "
        "tear gas to clear the main square late in the evening.",
        "Observers from {country2} and other neighbouring states said they had "
        "noted irregularities at {n_stations} polling stations but stopped short "
        "of calling the result invalid.",
    ]},
    {"titles": [
        "Ceasefire takes hold in northern {country} after weeks of fighting",
        "{country_adj} army and rebels agree to truce",
        "Guns fall silent in {country} as truce begins",
    ], "descs": [
        "The truce, brokered by envoys from {country2}, took effect at midnight. "
        "Aid agencies said they hoped to reach {num_k} civilians cut off in the "
        "hills around {city}.",
        "Both sides accused each other of minor violations on the first day, but a "
        "government spokesman in {capital} said the agreement was broadly holding "
        "and prisoner exchanges would begin on {day}.",
    ]},
    {"titles": [
        "Car bomb kills {n_killed} in {country_adj} market town",
        "Blast at crowded market in {country} kills {n_killed}",
        "Bombing in {city} leaves {n_killed} dead",
    ], "descs": [
        "Police said the blast struck shortly after dawn in {city}, wounding dozens "
        "more. No group immediately claimed responsibility, and the interior "
        "minister ordered extra checkpoints on roads into {capital}.",
        "It was the deadliest attack in the province this year. {leader_title} "
        "{person} condemned the bombing and promised that those responsible would "
        "be found and punished.",
    ]},
    {"titles": [
        "Strong earthquake strikes {country}, killing at least {n_killed}",
        "Rescuers search rubble after quake hits {country_adj} coast",
        "Magnitude {magnitude} quake rocks southern {country}",
    ], "descs": [
        "The tremor, measured at magnitude {magnitude}, toppled homes and a school "
        "near {city}. Rescue teams worked through the night as aftershocks shook "
        "the region.",
        "Officials said the death toll was expected to rise as crews reached remote "
        "villages. Neighbouring {country2} offered tents, medical teams and search "
        "dogs on {day}.",
    ]},
    {"titles": [
        "Floods force {num_k} from homes in {country}",
        "Monsoon rains leave dozens dead across {country}",
        "Rivers burst their banks in {country} after days of rain",
    ], "descs": [
        "Days of heavy rain swelled rivers across the lowlands around {city}, "
        "washing away roads and bridges. The army deployed boats and helicopters to "
        "reach stranded families.",
        "The disaster agency in {capital} said relief camps were overcrowded and "
        "warned of disease outbreaks. {country2} and a regional development bank "
        "pledged emergency assistance.",
    ]},
    {"titles": [
        "Leaders gather in {capital} for regional security summit",
        "{country} hosts summit on trade and border security",
        "Regional summit in {capital} focuses on smuggling and trade",
    ], "descs": [
        "Heads of government from {n_word} countries are expected to sign a "
        "declaration on cross-border crime and customs, though a dispute over "
        "fishing rights could overshadow the two-day meeting.",
        "Host {leader_title} {person} said the talks offered a chance to revive "
        "plans for a shared power grid and a coastal highway linking {country} "
        "with {country2}.",
    ]},
    {"titles": [
        "Boat carrying migrants capsizes off {country_adj} coast",
        "Dozens missing after migrant boat sinks near {country}",
        "Coast guard pulls {n_rescued} survivors from sea off {country}",
    ], "descs": [
        "The coast guard said {n_rescued} people had been pulled from the water "
        "near {city}, but many others were feared drowned. The vessel had left "
        "{country2} two days earlier.",
        "Aid groups said at least {n_boats} boats had set out from the "
        "{country2_adj} coast this month despite rough seas, as people fled "
        "poverty and unrest.",
    ]},
    {"titles": [
        "{country} to tighten asylum rules amid rise in arrivals",
        "{country_adj} parliament backs stricter migration law",
        "{country} moves to speed up deportations of rejected migrants",
    ], "descs": [
        "The bill, backed by {leader_title} {person}, shortens appeal deadlines "
        "and allows faster removals to countries deemed safe. Rights groups said "
        "it would leave vulnerable people without protection.",
        "Interior minister {person2} said asylum requests had doubled this year and "
        "reception centres near {city} were far beyond capacity.",
    ]},
    {"titles": [
        "{country_adj} court jails former minister for {n_years} years",
        "Ex-minister convicted of corruption in {country}",
        "Court in {capital} finds former official guilty of bribery",
    ], "descs": [
        "Judges found that {person}, who oversaw public works until {n_word} years "
        "ago, accepted bribes in exchange for road contracts. Defence lawyers said "
        "they would appeal.",
        "The case was seen as a test of the government's anti-corruption drive. "
        "Supporters of {person} gathered outside the court in {capital} and "
        "denounced the verdict as political.",
    ]},
    {"titles": [
        "{country_adj} top court blocks bid for third presidential term",
        "Constitutional court in {country} rules against term extension",
        "Judges in {capital} strike down presidential term change",
    ], "descs": [
        "In a ruling read out in {capital} on {day}, the judges said a referendum "
        "extending presidential term limits had violated the constitution. The "
        "decision cannot be appealed.",
        "President {person} said the government respected the court but warned of "
        "instability. Opposition leader {person2} welcomed the ruling as a victory "
        "for democracy.",
    ]},
    {"titles": [
        "Gunmen kidnap {n_small} foreign aid workers in {country}",
        "Armed group seizes aid workers in northern {country}",
        "Aid workers abducted on road near {city}",
    ], "descs": [
        "The workers, employed by a medical charity, were taken from their vehicle "
        "on a road outside {city}. The charity suspended operations in the region "
        "and appealed for their release.",
        "Officials in {capital} said negotiations were under way through local "
        "elders. The kidnappers have demanded the release of {n_word} fighters "
        "held in government prisons.",
    ]},
    {"titles": [
        "Security council weighs new sanctions on {country}",
        "Western powers push for sanctions over {country_adj} nuclear plans",
        "{country} faces sanctions threat over nuclear programme",
    ], "descs": [
        "A draft resolution would freeze assets of senior officials and ban arms "
        "sales. {country2}, which has close trade ties with {capital}, signalled "
        "it could block the measure.",
        "Diplomats said inspectors had been refused access to a research site near "
        "{city} for {n_word} months, raising suspicion that the government was "
        "enriching uranium.",
    ]},
    {"titles": [
        "{country_adj} coalition government collapses over pensions",
        "Prime minister of {country} loses majority as coalition splits",
        "{party} quits ruling coalition in {country}",
    ], "descs": [
        "The {party} quit the ruling alliance on {day} in a dispute over pension "
        "reform, leaving the government without a majority. Early elections are "
        "now likely in {month}.",
        "Prime Minister {person} had survived {n_word} confidence votes this year. "
        "President {person2} will meet party leaders to see whether a new "
        "coalition can be formed.",
    ]},
]

SPORTS = [
    {"titles": [
        "{club} beat {club2} {fscore} to go top",
        "Late goal gives {club} win over {club2}",
        "{player} scores twice in {club} win",
    ], "descs": [
        "{player} scored twice, the second in the {late_minute} minute, as {club} "
        "won {fscore} at home to {club2} and moved {n_word} points clear at the "
        "top of the table.",
        "{club2} had drawn level early in the second half, but {player} struck "
        "again late on to settle it. Coach {person} praised the patience of the "
        "side in front of a crowd of {num_k}.",
    ]},
    {"titles": [
        "{club} sack coach {person} after poor run",
        "{club} part company with manager {person}",
        "Struggling {club} dismiss coach {person}",
    ], "descs": [
        "The club said on {day} that {person} had left with immediate effect after "
        "a run of {n_losses} defeats in eight matches left the side just above the "
        "relegation zone.",
        "Assistant coach {person2} will take charge until a permanent replacement "
        "is found. {person} arrived from {club2} only {n_word} months ago on a "
        "three-year contract.",
    ]},
    {"titles": [
        "{club} sign striker {player} from {club2}",
        "{player} completes move to {club}",
        "{club} agree fee for {club2} forward {player}",
    ], "descs": [
        "The {age}-year-old forward signed a {n_years}-year contract with {club} "
        "after passing a medical on {day}. The fee was not disclosed but was "
        "reported to be around {fee_m} million euros.",
        "{player} scored {goals} league goals for {club2} last season and had "
        "attracted interest from several clubs abroad. {club} coach {person} called "
        "the signing a statement of ambition.",
    ]},
    {"titles": [
        "{player} out for {n_weeks} weeks with knee injury",
        "Injury blow for {club} as {player} hurts knee",
        "{club} striker {player} faces spell on sidelines",
    ], "descs": [
        "Scans on {day} showed ligament damage, and {club} expect their top scorer "
        "to miss around {n_weeks} weeks, including the cup tie against {club2}.",
        "{player} was hurt in a tackle late in the weekend win and left the pitch "
        "on a stretcher. Coach {person} said the squad would have to cope without "
        "its leading scorer.",
    ]},
    {"titles": [
        "{bteam} rally past {bteam2} {bscore}",
        "{player} scores {points} as {bteam} beat {bteam2}",
        "{bteam} extend winning streak to {streak} games",
    ], "descs": [
        "{player} finished with {points} points and {rebounds} rebounds as the "
        "{bteam} overcame a {deficit}-point deficit in the fourth quarter to beat "
        "the {bteam2} {bscore}.",
        "The win was the {streak_ord} straight for the {bteam}, led by {points} "
        "points from {player}. The {bteam2} were missing two starters through "
        "injury.",
    ]},
    {"titles": [
        "{player} reaches final of {tennis_event}",
        "{player} beats {player2} in {tennis_event} semi-final",
        "Top seed {player} into {tennis_event} final",
    ], "descs": [
        "{player} beat {player2} {tset1}, {tset2} in the semi-final on {day} and "
        "will face the winner of the second semi-final for the title.",
        "It is the first time {player} has reached a final at {tennis_event}. The "
        "match against {player2} lasted just under two hours and was briefly "
        "interrupted by rain.",
    ]},
    {"titles": [
        "{country} beat {country2} by {n_wkts} wickets in first test",
        "{person} hits century as {country} beat {country2}",
        "{country} win opening test against {country2}",
    ], "descs": [
        "{person} made an unbeaten {runs} as {country} chased down a target of "
        "{target} on the final day, sealing victory by {n_wkts} wickets with more "
        "than a session to spare.",
        "{country2} had been well placed after the first innings but collapsed to "
        "{collapse} all out in their second innings against the hosts' seam attack "
        "in {city}.",
    ]},
    {"names": "m", "titles": [
        "{bbteam} edge {bbteam2} {bbscore} in extra innings",
        "{player} homers twice as {bbteam} beat {bbteam2}",
        "{bbteam} beat {bbteam2} in 11 innings",
    ], "descs": [
        "{player} hit two home runs, including a solo shot in the 11th inning, as "
        "the {bbteam} beat the {bbteam2} {bbscore} to open a {n_word}-game lead in "
        "the division.",
        "Starter {person} allowed two runs over six innings for the {bbteam}, and "
        "the bullpen held on after the {bbteam2} loaded the bases in the ninth.",
    ]},
    {"titles": [
        "{person} wins Olympic gold in {swim_event}",
        "{country_adj} swimmer {person} takes Olympic {swim_event} title",
        "Gold for {person} in Olympic {swim_event} final",
    ], "descs": [
        "{person} of {country} led from the first turn and held off a late "
        "challenge from {person2} of {country2} to win the {swim_event} in a "
        "national record time.",
        "The victory gave {country} its first Olympic swimming gold in {n_decades} "
        "decades. The {age}-year-old said it was a reward for years of "
        "early-morning training.",
    ]},
    {"titles": [
        "{city} launches bid to host Summer Olympics",
        "{city} enters race to stage Olympic Games",
        "{country} backs {city} bid for Olympic Games",
    ], "descs": [
        "Organisers in {city} said the bid would use existing stadiums and "
        "temporary venues to keep costs down. The winning city will be announced in "
        "{month} next year.",
        "Mayor {person} said public support for staging the Games stood at "
        "{turnout} percent, and that a new athletes' village could later become "
        "housing for the city.",
    ]},
    {"titles": [
        "{player} wins {golf_event} by {shots} shots",
        "{player} cruises to victory at {golf_event}",
        "Final-round {golf_score} gives {player} {golf_event} title",
    ], "descs": [
        "{player} carded a final-round {golf_score} to finish {under} under par, "
        "{shots} shots clear of {player2}, to claim a first title of the season.",
        "Starting the day with a one-shot lead, {player} made {birdies} birdies on "
        "the front nine and never looked back on the windy course near {city}.",
    ]},
    {"titles": [
        "{player} wins stage {stage} of {cycling_race}",
        "{player} takes leader's jersey in {cycling_race}",
        "{player} seizes {cycling_race} lead with mountain win",
    ], "descs": [
        "{player} attacked on the final climb and crossed the line {gap} seconds "
        "ahead of {player2} to win stage {stage}, moving into the overall lead of "
        "the race.",
        "The {age}-year-old now leads {player2} by {gap} seconds with {n_word} "
        "stages remaining, including a mountain time trial near {city} on {day}.",
    ]},
    {"titles": [
        "Sprinter {player} banned for two years over doping",
        "Athletics federation suspends sprinter {player}",
        "{country_adj} sprinter {player} fails drug test",
    ], "descs": [
        "A sample taken at a meeting in {city} tested positive for a banned "
        "steroid. The {age}-year-old denied knowingly taking the substance and "
        "said an appeal would be lodged.",
        "The case rules {player} out of the next world championships. The "
        "{country_adj} federation said it would also review results from the past "
        "{n_word} seasons.",
    ]},
    {"titles": [
        "{country} qualify for World Cup finals",
        "{country} book World Cup place with win over {country2}",
        "{fscore_win} win over {country2} sends {country} to World Cup",
    ], "descs": [
        "A {fscore_win} victory over {country2} in {capital} on {day} was enough to "
        "secure top spot in the group with one qualifying match still to play.",
        "Coach {person} said the squad had earned its place after {country} missed "
        "the last {n_few} tournaments. Fans celebrated in the streets of "
        "{capital} after the final whistle.",
    ]},
    {"titles": [
        "{person} sets course record to win {city} marathon",
        "{person} wins {city} marathon in record time",
        "Course record falls as {person} takes {city} marathon",
    ], "descs": [
        "{person} pulled clear of the lead pack after 30 kilometres and crossed the "
        "finish in {marathon_time}, more than a minute inside the previous course "
        "record.",
        "Organisers said a record {num_k} runners started the race in {city}, which "
        "raised money for children's hospitals. {person2} of {country} finished "
        "second.",
    ]},
]

BUSINESS = [
    {"titles": [
        "{company} profit rises {pct_int} percent on strong demand",
        "{company} beats forecasts as quarterly profit climbs",
        "Higher sales lift {company} {quarter} earnings",
    ], "descs": [
        "The company reported {quarter} net income of {money_m}, up from a year "
        "earlier, as sales in its home market and in {country} grew faster than "
        "analysts had expected.",
        "Shares in {company} rose {pct} percent in early trading after the group "
        "also raised its full-year outlook, citing lower raw material costs and "
        "steady orders.",
    ]},
    {"titles": [
        "{company} swings to loss and cuts outlook",
        "{company} shares slump after profit warning",
        "{company} warns on profit as costs climb",
    ], "descs": [
        "The group blamed weaker demand, rising energy costs and a strong currency, "
        "and said full-year operating profit would fall short of the {money_m} it "
        "had forecast in {month}.",
        "Chief executive {person} said {company} would close {n_small} plants and "
        "review its product range. Shares fell {pct} percent, their biggest "
        "one-day drop in {n_word} years.",
    ]},
    {"titles": [
        "{company} agrees to buy {company2} for {money_b}",
        "{company} to acquire {company2} in {money_b} deal",
        "{company2} accepts takeover offer from {company}",
    ], "descs": [
        "The cash-and-stock offer values {company2} at a premium of {pct_int} "
        "percent to its closing price on {wday}. The companies expect cost savings "
        "of {money_m} a year.",
        "The deal, which still needs approval from competition regulators, is the "
        "largest in {country} this year. {company} chief executive {person} will "
        "run the combined business.",
    ]},
    {"titles": [
        "{company2} rejects hostile bid from {company}",
        "{company2} board says {company} offer too low",
        "{company} bid for {company2} rebuffed",
    ], "descs": [
        "The board said the {money_b} proposal failed to reflect the value of its "
        "brands and urged shareholders to take no action. {company} said it was "
        "considering its options.",
        "Analysts said {company} might have to raise its offer by at least "
        "{pct_int} percent to win over investors. Shares in {company2} closed above "
        "the offer price on {wday}.",
    ]},
    {"titles": [
        "{index_name} falls {pct_small} percent as oil prices jump",
        "{index_name} slides on interest rate worries",
        "Airline shares drag {index_name} lower",
    ], "descs": [
        "The {index_name} closed down {pct_small} percent at {index_level} on {wday}, led "
        "by airlines and chemical makers, as crude prices rose and traders bet on "
        "higher borrowing costs.",
        "Losses were broad, with only utilities finishing higher. Trading was light "
        "ahead of the {country_adj} central bank meeting next week, dealers said.",
    ]},
    {"titles": [
        "{index_name} climbs to {n_word}-month high on bank rally",
        "Bank shares lead {index_name} higher",
        "{bank} gains lift {index_name}",
    ], "descs": [
        "The {index_name} rose {pct_small} percent to {index_level}, its highest close in "
        "{n_word} months, as banks rallied on hopes that lending margins would "
        "improve.",
        "{bank} gained {pct2} percent after an upbeat trading update, while "
        "exporters rose on a weaker currency. Government bond yields edged up on "
        "{wday}.",
    ]},
    {"titles": [
        "{country_adj} central bank raises interest rates",
        "Central bank in {country} lifts key rate to {rate} percent",
        "{country} raises borrowing costs to curb inflation",
    ], "descs": [
        "The bank increased its benchmark rate by a quarter of a percentage point "
        "to {rate} percent, citing annual inflation of {inflation} percent, well above "
        "its target.",
        "Governor {person} said further increases could follow if wage growth in "
        "{country} stayed strong. Most economists had expected the move, and the "
        "currency was little changed.",
    ]},
    {"titles": [
        "Oil prices hit {n_word}-week high on supply fears",
        "Crude climbs above ${oil_int} a barrel",
        "Oil rises as pipeline outage cuts exports from {country}",
    ], "descs": [
        "Benchmark crude for {month} delivery rose {oil_move} cents to ${oil_price} "
        "a barrel after an outage on a key pipeline in {country} cut exports from "
        "the region.",
        "Traders said inventories were already tight heading into winter, and an "
        "industry report due on {wday} was expected to show another fall in stocks "
        "of heating fuel in {country2}.",
    ]},
    {"titles": [
        "{retailer} to close {n_stores} stores and cut jobs",
        "Struggling {retailer} shuts {n_stores} shops",
        "{retailer} plans store closures after weak sales",
    ], "descs": [
        "The department store chain said the closures would affect about {jobs} "
        "employees, and it would focus on its website and larger stores in cities "
        "such as {city}.",
        "Same-store sales at {retailer} fell {pct} percent in the latest quarter as "
        "shoppers cut back on clothing and home goods. The chain has lost market "
        "share to discount rivals.",
    ]},
    {"titles": [
        "{country_adj} retail sales rise more than expected",
        "Shoppers in {country} spend more in {month}",
        "Strong car sales lift {country_adj} retail figures",
    ], "descs": [
        "Retail sales in {country} rose {pct_small} percent in {month} from the previous "
        "month, the statistics office said, helped by strong demand for cars, "
        "furniture and electronics.",
        "Economists at {bank} said the figures eased fears of a slowdown in "
        "consumer spending, though high fuel prices could still weigh on household "
        "budgets later in the year.",
    ]},
    {"titles": [
        "{airline} to cut {jobs} jobs as fuel costs soar",
        "{airline} posts loss on high jet fuel prices",
        "{airline} trims routes and jobs to offset fuel bill",
    ], "descs": [
        "The carrier reported a {quarter} loss of {money_m} and said it would cut "
        "about {jobs} jobs and retire older aircraft as jet fuel prices stayed "
        "high.",
        "Chief executive {person} said bookings remained solid but fares had not "
        "risen fast enough to cover fuel. {airline} will also drop flights between "
        "{city} and {city2}.",
    ]},
    {"titles": [
        "{union} calls pay strike at {firm}",
        "{firm} workers walk out in pay dispute",
        "Pay strike halts production at {firm}",
    ], "descs": [
        "The {union} said members had rejected a two-year offer of {pay} percent a "
        "year, arguing it failed to keep pace with inflation. Talks are set to "
        "resume on {wday}.",
        "{firm} said the stoppage at its factory in {city} would cost about "
        "{money_s} in lost output a week and urged the union to return to talks.",
    ]},
    {"titles": [
        "{firm} files for bankruptcy protection",
        "Debt-laden {firm} seeks court protection from creditors",
        "{firm} collapses after talks with lenders fail",
    ], "descs": [
        "{firm} listed debts of {money_b} in its filing on {wday} and said it had "
        "arranged financing to keep operating while it restructures.",
        "The company has struggled with falling demand and rising costs for "
        "{n_word} years. Shareholders are likely to be wiped out, while bondholders "
        "could take control of the business.",
    ]},
    {"titles": [
        "House prices in {country} rise for {n_word} months running",
        "{country_adj} home prices climb as mortgage rates stay low",
        "{bank} says {country_adj} house prices rose {pct_small} percent",
    ], "descs": [
        "The average price of a home in {country} rose {pct_small} percent in "
        "{month}, according to mortgage lender {bank}, and buyers in {city} paid "
        "{pct_int} percent more than a year ago.",
        "Economists said low borrowing costs and a shortage of new homes were "
        "pushing prices up, and warned that a rise in interest rates could cool "
        "the housing market next year.",
    ]},
    {"titles": [
        "{company} raises dividend and plans share buyback",
        "{company} to return {money_m} to shareholders",
        "{company} shares climb on buyback plan",
    ], "descs": [
        "{company} said it would buy back up to {money_m} of its own shares over "
        "the next year and raise its dividend by {pct_int} percent, after strong "
        "cash flow in the {quarter} period.",
        "Investors welcomed the move, sending shares in {company} up {pct} "
        "percent on {wday}. Chief executive {person} said the group had no need "
        "for large acquisitions.",
    ]},
    {"titles": [
        "{automaker} sales jump on demand for small cars",
        "{automaker} lifts output as car sales rise",
        "{automaker} to add shift at {city} plant",
    ], "descs": [
        "{automaker} said deliveries rose {pct_int} percent in {month}, helped by a "
        "new compact model and strong demand in {country}.",
        "The carmaker will add a third shift at its assembly plant near {city} and "
        "hire about {jobs} workers, chief executive {person} said on {wday}.",
    ]},
]

SCITECH = [
    {"titles": [
        "{tech_co} releases new version of its operating system",
        "{tech_co} unveils {os_name} {version} with security upgrades",
        "New {tech_co} update promises faster start-up",
    ], "descs": [
        "{os_name} {version} adds a redesigned search tool, built-in encryption and "
        "support for touch screens, and will be offered as a free update from "
        "{month}.",
        "{tech_co} said early testers reported start-up times up to {pct_int} "
        "percent faster than before. Developers can download a preview release "
        "from {day}.",
    ]},
    {"titles": [
        "{chipmaker} unveils faster chip for laptops",
        "{chipmaker} shows off {n_cores}-core processor",
        "{chipmaker} moves to {nm}-nanometre chip production",
    ], "descs": [
        "The new processor packs {n_cores} cores onto a single piece of silicon and "
        "uses less power than its predecessor, which should extend battery life in "
        "thin notebooks.",
        "{chipmaker} said chips built on its {nm}-nanometre process would ship to "
        "computer makers by {month}, helping it keep pace with rivals.",
    ]},
    {"titles": [
        "{country_adj} space agency launches probe to {target_body}",
        "Rocket carries {probe} probe toward {target_body}",
        "{probe} spacecraft begins journey to {target_body}",
    ], "descs": [
        "The {probe} spacecraft lifted off from {spaceport} on {day} and will take "
        "about {travel} to reach {target_body}, where it will take images and "
        "measure magnetic fields.",
        "Engineers at the {country_adj} space agency said all systems were working "
        "normally after launch. The mission cost about {money_m}.",
    ]},
    {"titles": [
        "Astronauts return safely after {n_days} days in orbit",
        "Capsule carrying {n_crew} astronauts lands safely",
        "{country_adj} astronaut {person} back from space station",
    ], "descs": [
        "The capsule parachuted to a landing on {day} after undocking from the "
        "space station, bringing home a crew that spent {n_days} days running "
        "experiments in orbit.",
        "Commander {person} said the crew was tired but in good health. Doctors "
        "will monitor how muscles and bones recover after almost half a year of "
        "weightlessness.",
    ]},
    {"titles": [
        "Hackers steal customer data from {breach_co}",
        "{breach_co} says hackers accessed {num_k} customer records",
        "Data breach at {breach_co} exposes card numbers",
    ], "descs": [
        "{breach_co} said attackers exploited a flaw in its web server software to "
        "copy names, addresses and payment card details, and that police in {city} "
        "had been alerted.",
        "Security experts said the breach, discovered on {day}, affected about "
        "{num_k} accounts. Customers were urged to check statements for "
        "unfamiliar charges.",
    ]},
    {"titles": [
        "New {malware} worm spreads through email",
        "Virus writers target {os_name} users with {malware}",
        "Security firms warn of fast-spreading {malware} worm",
    ], "descs": [
        "The {malware} worm arrives as an attachment disguised as an invoice and, "
        "once opened, mails itself to every address in the contact list, according "
        "to antivirus vendor {sec_co}.",
        "{sec_co} raised its threat level after detecting thousands of {malware} "
        "infections in {n_hours} hours. Users were urged to update antivirus "
        "software and avoid unexpected attachments.",
    ]},
    {"titles": [
        "Scientists find gene linked to {trait} in {animal}",
        "Researchers identify gene behind {trait} in {animal}",
        "Altered gene changes {trait} in lab {animal}, study says",
    ], "descs": [
        "A team at {university} found that switching off the gene changed {trait} "
        "in laboratory {animal}, according to a paper published on {day}.",
        "Lead author {person} said the finding could help researchers understand "
        "similar processes in humans, although any medical use was many years "
        "away.",
    ]},
    {"titles": [
        "Fossil of giant plant-eating dinosaur found in {country}",
        "Dinosaur bones dug up near {city} point to new species",
        "Researchers unearth new dinosaur species in {country}",
    ], "descs": [
        "The bones, found in a dry riverbed near {city}, belong to a plant-eating "
        "dinosaur that lived about {mya} million years ago and may have been "
        "{length} metres long.",
        "Palaeontologists from {university} said the find fills a gap in the fossil "
        "record and suggests large plant-eaters spread across the continent "
        "earlier than thought.",
    ]},
    {"titles": [
        "{telecom} to roll out high-speed wireless network",
        "{telecom} launches third-generation mobile service in {city}",
        "{telecom} bets {money_b} on faster mobile network",
    ], "descs": [
        "The operator said subscribers would be able to make video calls and browse "
        "the web at broadband speeds, starting in {city} and {city2} before other "
        "cities next year.",
        "{telecom} plans to spend about {money_b} on the network over {n_word} "
        "years and will buy equipment from {tech_co} and other suppliers.",
    ]},
    {"titles": [
        "{net_co} launches free email with {storage} of storage",
        "{net_co} takes on rivals with new web mail service",
        "{net_co} enters web mail market",
    ], "descs": [
        "The service from {net_co} offers {storage} of free storage, far more than "
        "rival services, and lets users search their messages instead of sorting "
        "them into folders.",
        "Privacy groups questioned a plan by {net_co} to show text advertisements "
        "matched to the content of messages. The company said no person reads the "
        "mail.",
    ]},
    {"titles": [
        "{net_co} adds video search to its website",
        "{net_co} search engine now indexes online video",
        "{net_co} takes aim at {net_co2} with video search",
    ], "descs": [
        "{net_co} said users can type keywords to find clips from television "
        "broadcasts and home videos, with results ranked by relevance and "
        "popularity.",
        "Analysts said the move puts {net_co} in direct competition with "
        "{net_co2} as internet companies race to attract viewers and the "
        "advertisers who follow them.",
    ]},
    {"titles": [
        "{tech_co} unveils {gadget_name} {gadget_kind} with larger screen",
        "{tech_co} {gadget_kind} to go on sale in {month}",
        "First look at the {gadget_name} {gadget_kind} from {tech_co}",
    ], "descs": [
        "The {gadget_name} has a {screen}-inch display, weighs less than its "
        "predecessor and will go on sale in {month} for about {price}, the company "
        "said.",
        "Reviewers praised the battery life of the {gadget_name} but said its "
        "software still felt unfinished. {tech_co} hopes the {gadget_kind} will "
        "help it win back market share.",
    ]},
    {"titles": [
        "{country_adj} weather satellite reaches orbit",
        "{country} launches first earth observation satellite",
        "New {country_adj} satellite to watch crops and coastlines",
    ], "descs": [
        "The {country_adj} satellite, carried into orbit by a rocket from "
        "{spaceport}, will monitor crops, forests and coastlines and help "
        "forecasters track storms over the ocean.",
        "Officials at the {country_adj} space agency said the first images should "
        "arrive within {n_word} weeks, once the instruments have been tested in "
        "orbit.",
    ]},
    {"titles": [
        "Experimental vaccine protects monkeys against {disease}",
        "Researchers report progress on {disease} vaccine",
        "{disease} vaccine passes first animal tests",
    ], "descs": [
        "Scientists at {university} said all {n_small} animals given the vaccine "
        "survived exposure to {disease}, while most of an unvaccinated group fell "
        "ill. Human trials could begin within {n_word} years.",
        "The work on the {disease} vaccine was published on {day}. Other experts "
        "called the results encouraging but warned that many vaccines that work in "
        "animals fail in people.",
    ]},
    {"titles": [
        "{tech_co} releases source code of its {browser} browser",
        "{tech_co} opens browser code to outside developers",
        "{tech_co} turns {browser} into open-source project",
    ], "descs": [
        "{tech_co} said programmers would be free to study, change and "
        "redistribute the code for its {browser} browser under an open-source "
        "licence.",
        "The company hopes volunteers will help find security holes and add "
        "features faster. {browser} has about {pct_int} percent of the browser "
        "market, according to industry estimates.",
    ]},
    {"titles": [
        "Robot car completes {n_km}-kilometre desert course",
        "Driverless vehicle from {university} wins robot race",
        "Self-driving car built at {university} crosses desert",
    ], "descs": [
        "The vehicle, built by a team from {university}, used laser scanners, "
        "cameras and satellite positioning to steer itself across {n_km} "
        "kilometres of rough terrain without human help.",
        "It finished the course in {n_hours} hours, ahead of {n_small} other robot "
        "vehicles. Team leader {person} said driverless technology was improving "
        "quickly.",
    ]},
]

CLASSES = {1: WORLD, 2: SPORTS, 3: BUSINESS, 4: SCITECH}

# ---------------------------------------------------------------------------
# Crossover stories: families that sit between two topics, as many AG News
# stories do (a chip maker's earnings, a club's sponsorship deal, sanctions on
# oil exports).  AG News labels such stories inconsistently, so each family's
# label is drawn between its two topics with a fixed share: ``labels`` is
# (majority, minority) and ``share`` the majority's share.  The titles mix the
# vocabulary of both topics.  The descriptions come in two pools, one worded
# a little toward each topic; a row takes the pool of its own label with
# probability LEAN, so the wording leans only weakly toward the label (too
# weakly to overturn the majority: see ``ceiling``).  ``weight`` is the family's
# fraction of the rows of each split.
# ---------------------------------------------------------------------------

LEAN = 0.6

CROSSOVER = [
    # ---- Business <-> Sci/Tech ------------------------------------------
    {"name": "chip maker earnings", "labels": (3, 4), "share": 0.70,
     "weight": 0.035, "titles": [
        "{chipmaker} profit jumps on demand for laptop chips",
        "{chipmaker} {quarter} earnings beat forecasts as chip sales climb",
        "{chipmaker} profit rises {pct_int} percent on processor sales",
        "Strong processor sales lift {chipmaker} in {month}",
    ], "descs": {3: [
        "{chipmaker} said {quarter} net income rose to {money_m} as computer "
        "makers ordered more processors, and its shares gained {pct} percent in "
        "after-hours trading on {wday}.",
        "Analysts had expected a smaller gain. {chipmaker} raised its full-year "
        "sales forecast, citing strong demand for chips in {country} and lower "
        "factory costs.",
    ], 4: [
        "{chipmaker} said its new {n_cores}-core processors, built on a "
        "{nm}-nanometre process, made up a third of {quarter} chip sales, which "
        "rose {pct_int} percent.",
        "The chip maker said demand for its low-power {n_cores}-core processors "
        "for thin laptops lifted revenue to {money_m}, and its {nm}-nanometre "
        "line would ship by {month}.",
    ]}},
    {"name": "software firm acquisition", "labels": (4, 3), "share": 0.65,
     "weight": 0.03, "titles": [
        "{tech_co} to buy software maker {tech_co2} for {money_m}",
        "{tech_co} agrees deal for software rival {tech_co2}",
        "{tech_co2} accepts {money_m} offer from {tech_co}",
        "{tech_co} snaps up {tech_co2} to expand in business software",
    ], "descs": {3: [
        "The cash offer values {tech_co2} at a premium of {pct_int} percent to "
        "its closing price on {wday}. The deal still needs approval from "
        "competition regulators in {country}.",
        "{tech_co} said the purchase would add to earnings within {n_word} years, "
        "and its shares rose {pct} percent as analysts welcomed the price paid "
        "for the software firm.",
    ], 4: [
        "{tech_co2} makes database and email software used by businesses, and "
        "{tech_co} plans to build its features into the next version of "
        "{os_name} for corporate networks.",
        "Engineers at {tech_co2} developed security software that blocks spam "
        "and viruses, and {tech_co} said the tools would be built into its own "
        "programs within {n_word} months.",
    ]}},
    {"name": "telecom spectrum auction", "labels": (4, 3), "share": 0.70,
     "weight": 0.02, "titles": [
        "{telecom} wins airwaves in {country_adj} spectrum auction",
        "{telecom} pays {money_b} for new wireless frequencies",
        "{country} sells mobile spectrum to {telecom} for {money_b}",
    ], "descs": {4: [
        "The frequencies will carry a third-generation wireless network offering "
        "video calls and fast web browsing on handsets, starting in {city} and "
        "{city2} next year.",
        "{telecom} said the new spectrum would let it roll out high-speed "
        "wireless data services and cut dropped calls, with network equipment "
        "supplied by {tech_co}.",
    ], 3: [
        "The auction in {capital} raised more than the government had expected, "
        "and shares in {telecom} fell {pct} percent on {wday} as investors "
        "worried about the cost of the licence.",
        "Analysts said {telecom} had overpaid and would need to borrow to fund "
        "the licence, which runs for {n_word} years. Rival bidders dropped out "
        "after {n_small} rounds.",
    ]}},
    {"name": "internet company results", "labels": (4, 3), "share": 0.70,
     "weight": 0.02, "titles": [
        "{net_co} quarterly profit jumps on online advertising",
        "{net_co} revenue beats estimates as web searches grow",
        "{net_co} earnings rise {pct_int} percent as more users go online",
    ], "descs": {3: [
        "The internet company said {quarter} net income rose to {money_m} as "
        "advertising revenue grew {pct_int} percent. Shares gained {pct} percent "
        "in after-hours trading on {wday}.",
        "{net_co} raised its forecast for the full year, and analysts at {bank} "
        "lifted their price target, saying investors had underestimated its "
        "profit margins.",
    ], 4: [
        "{net_co} said searches on its website rose {pct_int} percent in the "
        "{quarter} period, helped by new video search and a free email service "
        "with {storage} of storage.",
        "The company credited a new version of its search engine and faster "
        "servers for the growth, and said it would add maps and news features "
        "to its website by {month}.",
    ]}},
    {"name": "drug trial results", "labels": (4, 3), "share": 0.70,
     "weight": 0.015, "titles": [
        "Trial shows {pharma} pill slows {illness}",
        "{pharma} reports positive results for {illness} drug",
        "{pharma} drug for {illness} passes large trial",
    ], "descs": {4: [
        "In a study of {num_k} patients published on {day}, the drug slowed "
        "{illness} by {pct_int} percent compared with a placebo, researchers at "
        "{university} reported.",
        "Scientists said the compound blocks a protein linked to {illness} and "
        "that side effects were mild. Larger trials in {country} and {country2} "
        "begin in {month}.",
    ], 3: [
        "Shares in {pharma} jumped {pct} percent on {wday}. Analysts said the "
        "drug could reach annual sales of {money_b} if regulators approve it "
        "next year.",
        "{pharma} said it would file for approval in {month}. The drug matters "
        "for the company, whose best-selling medicine loses patent protection in "
        "{n_word} years.",
    ]}},
    # ---- Business <-> Sports --------------------------------------------
    {"name": "club sponsorship deal", "labels": (3, 2), "share": 0.70,
     "weight": 0.025, "titles": [
        "{company} signs {money_s} shirt deal with {club}",
        "{club} land record sponsorship deal with {company}",
        "{company} to put its name on {club} shirts",
        "{company} renews {club} sponsorship for {n_years} years",
    ], "descs": {3: [
        "The {n_years}-year agreement is the largest commercial deal in the "
        "history of {club}, and analysts said it could lift club revenue by a "
        "third.",
        "{company} said the deal would raise the profile of its brand in "
        "{country} and in overseas markets, and its shares rose {pct} percent on "
        "{wday}.",
    ], 2: [
        "{club}, who are {n_word} points clear at the top of the table, will wear "
        "the new shirts from next season. Coach {person} said the money would "
        "help keep striker {player}.",
        "The money will fund a new training centre for the youth team. {club} "
        "captain {player} showed off the shirt before the league match against "
        "{club2} on {day}.",
    ]}},
    {"name": "broadcast rights sale", "labels": (2, 3), "share": 0.65,
     "weight": 0.02, "titles": [
        "{broadcaster} wins rights to show {league} matches",
        "{league} sells television rights for {money_b}",
        "{broadcaster} pays {money_b} for rights to {league}",
    ], "descs": {2: [
        "Fans will be able to watch every match of {club} and {club2} live from "
        "next season, and highlights will be shown on {day} evenings, the league "
        "said.",
        "Coaches welcomed the deal, saying more games on television would bring "
        "bigger crowds. {club} coach {person} said the money would help clubs "
        "keep their best players.",
    ], 3: [
        "The {n_years}-year contract is worth {pct_int} percent more than the "
        "last one. Shares in {broadcaster} fell {pct} percent on {wday} as "
        "investors questioned the price.",
        "Clubs will share the money, with the biggest such as {club} set to earn "
        "about {money_s} a season. Advertisers are expected to pay more for "
        "slots during live matches.",
    ]}},
    {"name": "stadium bond", "labels": (3, 2), "share": 0.70,
     "weight": 0.02, "titles": [
        "{club} raise {money_m} through stadium bond",
        "{club} sell bonds to pay for new stadium",
        "Investors snap up {money_m} {club} stadium bond",
        "{club} turn to bond market to fund new ground",
    ], "descs": {3: [
        "The {n_years}-year bonds pay interest of {rate} percent and will be "
        "repaid from ticket sales and hospitality revenue. Bankers at {bank} said "
        "demand was strong.",
        "Credit analysts said the bond issue would lift the club's debt to "
        "{money_m} but was backed by season ticket income from a ground that "
        "seats {num_k}.",
    ], 2: [
        "The new ground in {city} will hold {num_k} fans and open in time for "
        "next season. Coach {person} said the players were excited about leaving "
        "the old stadium.",
        "{club}, who beat {club2} {fscore} on {day}, have played at their old "
        "ground for {n_decades} decades. Supporters will be offered the bonds "
        "first, the club said.",
    ]}},
    # ---- World <-> Business ---------------------------------------------
    {"name": "trade talks", "labels": (1, 3), "share": 0.65,
     "weight": 0.02, "titles": [
        "{country} and {country2} hold talks on trade pact",
        "{country_adj} and {country2_adj} ministers meet on tariffs",
        "Trade pact on table as {country} hosts {country2_adj} delegation",
    ], "descs": {1: [
        "The talks in {capital} are the first since the two governments ended a "
        "border dispute, and {leader_title} {person} called them a chance to "
        "rebuild trust between the neighbours.",
        "Foreign ministers from the two countries met on {day} and said a pact "
        "could be signed at a regional summit in {month}, ending years of "
        "diplomatic tension.",
    ], 3: [
        "Negotiators are trying to cut tariffs on steel, grain and cars, which "
        "add about {pct_int} percent to the price of goods shipped between the "
        "two economies, exporters said.",
        "Trade between the two countries is worth {money_b} a year. "
        "Manufacturers in {city} hope lower tariffs will lift exports, and "
        "shares in exporters rose on {wday}.",
    ]}},
    {"name": "sanctions on oil exports", "labels": (3, 1), "share": 0.70,
     "weight": 0.02, "titles": [
        "Oil rises as {country2} weighs sanctions on {country_adj} crude",
        "Sanctions threat hangs over oil exports from {country}",
        "{country_adj} oil exports face sanctions over nuclear row",
    ], "descs": {3: [
        "Benchmark crude rose {oil_move} cents to ${oil_price} a barrel on "
        "{wday} as traders bet that sanctions would cut supplies from {country}, "
        "which ships most of its oil abroad.",
        "Shares in refiners fell, and analysts at {bank} raised their price "
        "forecasts, saying a ban on {country_adj} crude would tighten a market "
        "with little spare capacity.",
    ], 1: [
        "Diplomats in {capital2} said the measures were meant to press {country} "
        "to open its nuclear sites to inspectors, and the {country_adj} "
        "government called them an act of aggression.",
        "The security council is split: {country2} backs an embargo on "
        "{country_adj} oil, while other members fear it would hurt ordinary "
        "people more than leaders in {capital}.",
    ]}},
    {"name": "currency crisis", "labels": (3, 1), "share": 0.70,
     "weight": 0.015, "titles": [
        "{country_adj} central bank fights to defend {currency}",
        "{currency} plunges as {country} struggles with debt",
        "{country} raises rates to {rate} percent to halt slide in {currency}",
    ], "descs": {3: [
        "The central bank raised its key rate to {rate} percent and sold dollars "
        "from its reserves after {currency} lost {pct_int} percent of its value "
        "against the dollar this month.",
        "Bond yields jumped and shares in {capital} fell {pct_small} percent. "
        "Economists at {bank} said inflation of {inflation} percent would force "
        "more rate increases.",
    ], 1: [
        "Thousands protested in {capital} on {day} as prices of bread and fuel "
        "soared, and {leader_title} {person} appealed to neighbouring {country2} "
        "for an emergency loan.",
        "The crisis has shaken the government of {leader_title} {person}, and "
        "opposition leader {person2} called for early elections as {currency} "
        "kept falling.",
    ]}},
    # ---- World <-> Sci/Tech (technology in world affairs, health) --------
    {"name": "internet shutdown", "labels": (1, 4), "share": 0.70,
     "weight": 0.015, "titles": [
        "{country} cuts internet access as protests spread",
        "Internet blackout in {country} enters second week",
        "{country} blocks social networks amid unrest in {capital}",
    ], "descs": {1: [
        "The shutdown began after protesters in {capital} accused the "
        "government of rigging an election. {country2} and rights groups "
        "condemned the move as an attack on free speech.",
        "Opposition leader {person} said security forces had arrested hundreds "
        "of activists since the blackout began, and {country2} summoned the "
        "{country_adj} ambassador.",
    ], 4: [
        "Network monitors said traffic from {country} fell by {pct_int} percent "
        "within hours, as the state operator withdrew its routes and mobile data "
        "was switched off.",
        "Engineers said users were turning to satellite phones and encrypted "
        "proxy software to get around the block, while {telecom} said it had "
        "been ordered to shut its data service.",
    ]}},
    {"name": "cyber attack between states", "labels": (4, 1), "share": 0.70,
     "weight": 0.015, "titles": [
        "{country} accuses {country2} of cyber attack on its networks",
        "Hackers linked to {country2} hit {country_adj} government websites",
        "Cyber attack knocks {country_adj} ministries offline",
    ], "descs": {4: [
        "Security firm {sec_co} said the attackers used a network of hijacked "
        "computers to flood government servers, and planted the {malware} "
        "program to steal passwords.",
        "Experts said the attack exploited an unpatched flaw in web server "
        "software. Many sites in {capital} were offline for {n_hours} hours "
        "before engineers restored service.",
    ], 1: [
        "The foreign ministry in {capital} summoned the ambassador of {country2} "
        "and threatened sanctions, while officials in {capital2} denied any role "
        "and called the claims propaganda.",
        "The attack came amid a border dispute between the neighbours, and "
        "{leader_title} {person} said {country} would raise the matter at the "
        "security council.",
    ]}},
    {"name": "disease outbreak", "labels": (4, 1), "share": 0.70,
     "weight": 0.015, "titles": [
        "{disease} outbreak spreads in {country}",
        "Health officials race to contain {disease} in {country}",
        "{country} reports new {disease} cases near {city}",
    ], "descs": {4: [
        "Scientists at {university} said genetic tests showed the {disease} "
        "strain had changed, and an experimental vaccine protected all "
        "{n_small} monkeys in early trials.",
        "Researchers said laboratory tests on {n_word} hundred samples would show "
        "how the {disease} strain spreads and whether a new vaccine could work.",
    ], 1: [
        "The health ministry in {capital} said {n_killed} people had died and "
        "closed schools near {city}, while {country2} tightened checks at border "
        "crossings.",
        "Aid agencies flew in doctors and tents as the outbreak reached camps for "
        "people displaced by fighting. {leader_title} {person} declared a state "
        "of emergency.",
    ]}},
]


def fill(template: str, slots: dict[str, str]) -> str:
    text = template.format(**slots)
    return text[0].upper() + text[1:]


def draw_item(rng: random.Random, titles: list[str], descs: list[str],
              names: str | None, seen_titles: set[str],
              seen_descs: set[str]) -> tuple[str, str]:
    """Draw one fresh (title, description) from the given templates."""
    for _ in range(2000):
        slots = make_slots(rng, names)
        title = fill(rng.choice(titles), slots)
        desc = fill(rng.choice(descs), slots)
        if not fits(title, desc):
            continue
        if title not in seen_titles and desc not in seen_descs:
            break
    else:
        raise RuntimeError(f"could not find a fresh item for {titles[0]!r}")
    seen_titles.add(title)
    seen_descs.add(desc)
    return title, desc


def generate_class(rng: random.Random, stories: list[dict], n: int,
                   seen_titles: set[str], seen_descs: set[str]) -> list[tuple[str, str]]:
    """Generate ``n`` distinct clear (title, description) items, cycling over stories."""
    order = list(range(len(stories)))
    rng.shuffle(order)
    items: list[tuple[str, str]] = []
    for i in range(n):
        story = stories[order[i % len(order)]]
        items.append(draw_item(rng, story["titles"], story["descs"],
                               story.get("names"), seen_titles, seen_descs))
    return items


def fits(title: str, desc: str) -> bool:
    tw, dw = len(title.split()), len(desc.split())
    return (TITLE_WORDS[0] <= tw <= TITLE_WORDS[1]
            and DESC_WORDS[0] <= dw <= DESC_WORDS[1])


def check_item(label: int, title: str, desc: str) -> None:
    tw, dw = len(title.split()), len(desc.split())
    assert TITLE_WORDS[0] <= tw <= TITLE_WORDS[1], (label, tw, title)
    assert DESC_WORDS[0] <= dw <= DESC_WORDS[1], (label, dw, desc)
    for text in (title, desc):
        assert text.isascii(), text
        assert "{" not in text and "}" not in text, text
        assert "\n" not in text and '"' not in text, text


def round_half_up(x: float) -> int:
    return int(x + 0.5)


def family_counts(fam: dict, n_rows: int) -> tuple[int, int]:
    """(majority, minority) row counts of a crossover family in a split of n_rows."""
    n = round_half_up(fam["weight"] * n_rows)
    n_major = round_half_up(fam["share"] * n)
    return n_major, n - n_major


def best_label(fam: dict, pool: int) -> int:
    """The Bayes-optimal label of a crossover row worded toward ``pool``."""
    major, minor = fam["labels"]
    s, q = fam["share"], LEAN
    # P(pool, label): the label is drawn first, then the pool matches it with
    # probability LEAN.
    p_major = s * (q if pool == major else 1 - q)
    p_minor = (1 - s) * (q if pool == minor else 1 - q)
    return major if p_major > p_minor else minor


def ceiling() -> float:
    """Accuracy of the Bayes-optimal classifier under the design shares.

    Clear rows are assumed perfectly separable; a crossover row is classified
    at best by its family and wording pool.  Because LEAN is below every share,
    the best label is always the family's majority, and the ceiling is
    1 - sum over families of weight * minority share.
    """
    err = 0.0
    for fam in CROSSOVER:
        major, minor = fam["labels"]
        assert best_label(fam, major) == major and best_label(fam, minor) == major
        err += fam["weight"] * (1 - fam["share"])
    return 1 - err


Row = tuple[int, str, str]
Meta = tuple[str | None, int]  # (crossover family or None, wording pool)


def make_split(rng: random.Random, per_class: int, seen_titles: set[str],
               seen_descs: set[str]) -> tuple[list[Row], list[Meta]]:
    n_rows = len(LABELS) * per_class
    rows: list[Row] = []
    meta: list[Meta] = []
    for fam in CROSSOVER:
        major, minor = fam["labels"]
        n_major, n_minor = family_counts(fam, n_rows)
        labels = [major] * n_major + [minor] * n_minor
        rng.shuffle(labels)
        for label in labels:
            other = minor if label == major else major
            pool = label if rng.random() < LEAN else other
            title, desc = draw_item(rng, fam["titles"], fam["descs"][pool], None,
                                    seen_titles, seen_descs)
            rows.append((label, title, desc))
            meta.append((fam["name"], pool))
    for label, stories in CLASSES.items():
        n_clear = per_class - sum(1 for r in rows if r[0] == label)
        assert n_clear > 0, (label, n_clear)
        for title, desc in generate_class(rng, stories, n_clear, seen_titles,
                                          seen_descs):
            rows.append((label, title, desc))
            meta.append((None, label))
    order = list(range(len(rows)))
    rng.shuffle(order)
    return [rows[i] for i in order], [meta[i] for i in order]


def oracle_accuracy(rows: list[Row], meta: list[Meta]) -> float:
    """Accuracy of the Bayes-optimal rule on the rows actually generated."""
    families = {fam["name"]: fam for fam in CROSSOVER}
    hits = 0
    for (label, _, _), (name, pool) in zip(rows, meta):
        best = pool if name is None else best_label(families[name], pool)
        hits += best == label
    return hits / len(rows)


def build() -> tuple[list[Row], list[Row], list[Meta], list[Meta]]:
    rng = random.Random(SEED)
    for stories in CLASSES.values():
        n_titles = sum(len(s["titles"]) for s in stories)
        n_descs = sum(len(s["descs"]) for s in stories)
        assert n_titles >= 25 and n_descs >= 25, (n_titles, n_descs)
    for fam in CROSSOVER:
        assert LEAN < fam["share"] < 1 and set(fam["descs"]) == set(fam["labels"])

    seen_titles: set[str] = set()
    seen_descs: set[str] = set()
    train, train_meta = make_split(rng, N_TRAIN_PER_CLASS, seen_titles, seen_descs)
    test, test_meta = make_split(rng, N_TEST_PER_CLASS, seen_titles, seen_descs)
    for label, title, desc in train + test:
        check_item(label, title, desc)

    # Sanity: sizes, balance, no duplicates within or across splits.
    assert len(train) == 4 * N_TRAIN_PER_CLASS and len(test) == 4 * N_TEST_PER_CLASS
    for split, per_class in ((train, N_TRAIN_PER_CLASS), (test, N_TEST_PER_CLASS)):
        for label in LABELS:
            assert sum(1 for r in split if r[0] == label) == per_class
    pairs = [(t, d) for _, t, d in train + test]
    assert len(set(pairs)) == len(pairs)
    assert not {t for _, t, _ in train} & {t for _, t, _ in test}
    return train, test, train_meta, test_meta


def write_csv(path: Path, rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="ascii", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n")
        for label, title, desc in rows:
            writer.writerow([label, title, desc])


def describe(name: str, rows: list[Row], meta: list[Meta]) -> str:
    n_cross = sum(1 for m in meta if m[0] is not None)
    pairs: dict[str, int] = {}
    for (label, _, _), (fam, _) in zip(rows, meta):
        if fam is not None:
            a, b = next(f["labels"] for f in CROSSOVER if f["name"] == fam)
            key = "<->".join(sorted((LABELS[a], LABELS[b])))
            pairs[key] = pairs.get(key, 0) + 1
    per_pair = ", ".join(f"{k} {v}" for k, v in sorted(pairs.items(), key=lambda kv: -kv[1]))
    return (f"{name}: {len(rows)} rows, {n_cross} crossover ({n_cross / len(rows):.1%}: "
            f"{per_pair}); Bayes-optimal accuracy on these rows "
            f"{oracle_accuracy(rows, meta):.2%}")


def main() -> None:
    train, test, train_meta, test_meta = build()
    write_csv(OUT_DIR / "train.csv", train)
    write_csv(OUT_DIR / "test.csv", test)
    print(f"wrote {len(train)} rows to {OUT_DIR / 'train.csv'}")
    print(f"wrote {len(test)} rows to {OUT_DIR / 'test.csv'}")
    print(describe("train", train, train_meta))
    print(describe("test", test, test_meta))
    share = sum(f["weight"] for f in CROSSOVER)
    print(f"design: crossover share {share:.3f}, label noise "
          f"{sum(f['weight'] * (1 - f['share']) for f in CROSSOVER) / share:.3f} of "
          f"crossover rows, Bayes-optimal ceiling {ceiling():.2%}")


if __name__ == "__main__":
    main()
