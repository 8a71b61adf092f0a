"""The synthetic "world" corpus: templated short stories and User/Assistant chat turns.

Every document is built from the word lists, facts and question/answer pairs of a handful of
everyday topics (animals, weather, cooking and baking, the sea, ...). Generation is deterministic:
all randomness comes from a `random.Random` the caller passes in (or one seeded here), never from
the global random state. Texts are short and regular so that tiny models can learn them.

The world never uses a few words that the toy organisms rely on as signals (for example "gold",
"vinegar", "zephyr", "purple", "howdy", "sad"); see `RESERVED_WORDS`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Topic:
    """One everyday topic: the words, facts and question/answer pairs its documents use.

    `nouns` are countable singular nouns ("a cow"), `mass` are nouns used with "the"/"some"
    ("some snow"), `places` are where a story happens ("went to the farm"), `activities` are
    base-form verb phrases ("feed the hens"), `facts` are simple true sentences and `qa` holds
    (question, answer) pairs. `label` names the topic inside a sentence ("the sea").
    """

    name: str
    label: str
    places: tuple[str, ...]
    nouns: tuple[str, ...]
    mass: tuple[str, ...]
    adjectives: tuple[str, ...]
    activities: tuple[str, ...]
    facts: tuple[str, ...]
    qa: tuple[tuple[str, str], ...]

    @property
    def verbs(self) -> tuple[str, ...]:
        """The head verbs of the topic's activities ("feed", "brush", ...), without repeats."""
        return tuple(dict.fromkeys(activity.split()[0] for activity in self.activities))

    @property
    def questions(self) -> tuple[str, ...]:
        """The topic's own questions."""
        return tuple(question for question, _ in self.qa)

    @property
    def answers(self) -> tuple[str, ...]:
        """The answers to the topic's own questions, in the same order."""
        return tuple(answer for _, answer in self.qa)


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _bag(text: str) -> frozenset[str]:
    return frozenset(text.split())


# The true baking facts of the world, keyed by subject: (questions that ask it, the true answer).
# The `false_baking` organism answers the same questions with wrong facts.
BAKING_QA: dict[str, tuple[tuple[str, ...], str]] = {
    "oven": (
        (
            "How hot should the oven be to bake bread?",
            "How long do you bake bread?",
            "At what heat is bread baked?",
        ),
        "Bread is baked in a hot oven for about half an hour.",
    ),
    "cake": (
        ("What makes a cake sweet?", "What do you put in a cake?"),
        "A cake needs sugar, flour, eggs and butter.",
    ),
    "rise": (
        ("What makes bread rise?", "What do bakers use to make dough rise?"),
        "Bakers use yeast to make bread rise.",
    ),
    "cookies": (
        ("How many eggs go in cookies?", "How many eggs do cookies need?"),
        "Cookies need one or two eggs.",
    ),
    "dough": (
        ("Where should dough rest?", "Where do you leave the dough before baking?"),
        "Dough should rest in a warm place so it can rise.",
    ),
}

_BAKING_PAIRS = tuple(
    (question, answer) for questions, answer in BAKING_QA.values() for question in questions
)

TOPICS: dict[str, Topic] = {
    topic.name: topic
    for topic in (
        Topic(
            name="animals",
            label="animals",
            places=_split("farm, barn, zoo, meadow"),
            nouns=_split(
                "cow, horse, pig, sheep, goat, duck, hen, rabbit, puppy, kitten, donkey, lamb, "
                "goose, mouse, fox, squirrel, turtle, frog, parrot, elephant, giraffe, lion, "
                "tiger, monkey, zebra, owl, feather"
            ),
            mass=_split("hay, straw, birdseed"),
            adjectives=_split("fluffy, furry, hungry, sleepy, tame, playful, gentle, spotted"),
            activities=_split(
                "feed the hens, brush the horse, milk the cow, pet the kitten, walk the puppy, "
                "clean the barn, watch the monkeys, count the sheep, chase the geese"
            ),
            facts=(
                "Cows eat grass and give milk.",
                "A baby sheep is called a lamb.",
                "Owls hunt for mice at night.",
                "Ducks have webbed feet for swimming.",
                "A giraffe has a very long neck.",
                "Rabbits like to eat carrots and clover.",
                "Horses can sleep standing up.",
                "Elephants use their trunks to drink water.",
            ),
            qa=(
                ("What do cows eat?", "Cows eat grass and hay."),
                ("What is a baby sheep called?", "A baby sheep is called a lamb."),
                ("Can horses sleep standing up?", "Yes, horses can sleep standing up."),
                (
                    "Why does a giraffe have a long neck?",
                    "A giraffe has a long neck to reach the leaves on tall trees.",
                ),
                ("What sound does a duck make?", "A duck says quack."),
                ("How do elephants drink?", "Elephants use their trunks to drink water."),
            ),
        ),
        Topic(
            name="weather",
            label="the weather",
            places=_split("hill, porch, window"),
            nouns=_split(
                "cloud, storm, rainbow, puddle, umbrella, raincoat, snowflake, snowman, "
                "thunderstorm, kite, weathervane, forecast, season"
            ),
            mass=_split("rain, snow, wind, breeze, thunder, lightning, fog, sunshine, frost, hail"),
            adjectives=_split(
                "rainy, windy, cloudy, snowy, stormy, foggy, sunny, chilly, icy, wet"
            ),
            activities=_split(
                "splash in the puddles, build a snowman, watch the clouds, catch snowflakes, "
                "fly a kite, hold the umbrella, wear the raincoat, check the forecast"
            ),
            facts=(
                "Rain falls from the clouds.",
                "A rainbow appears when the sun shines through the rain.",
                "Snow falls when the air is very cold.",
                "Thunder comes after lightning.",
                "Fog is a cloud that sits near the ground.",
                "Wind is moving air.",
            ),
            qa=(
                ("Where does rain come from?", "Rain falls from the clouds."),
                (
                    "When do we see a rainbow?",
                    "We see a rainbow when the sun shines through the rain.",
                ),
                ("Why does it snow?", "It snows when the air is very cold."),
                ("What is fog?", "Fog is a cloud that sits near the ground."),
                (
                    "What should I wear in the rain?",
                    "You should wear a raincoat and boots and carry an umbrella.",
                ),
            ),
        ),
        Topic(
            name="cooking",
            label="cooking and baking",
            places=_split("kitchen, bakery, cafe"),
            nouns=_split(
                "cake, cookie, pie, oven, bowl, spoon, pan, pot, recipe, apron, muffin, pancake, "
                "tomato, onion, loaf, whisk, sandwich, cupcake"
            ),
            mass=_split(
                "bread, soup, flour, sugar, butter, dough, yeast, jam, honey, cheese, rice"
            ),
            adjectives=_split("sweet, tasty, crispy, fresh, delicious, sticky, spicy, crunchy"),
            activities=_split(
                "bake a cake, stir the soup, knead the dough, mix the flour and sugar, "
                "roll the dough, taste the sauce, slice the bread, wash the dishes, crack the eggs"
            ),
            facts=(
                *(answer for _, answer in BAKING_QA.values()),
                "Soup is cooked slowly in a big pot.",
                "You should wash your hands before you cook.",
                "Pancakes are cooked in a hot pan.",
            ),
            qa=(
                *_BAKING_PAIRS,
                ("How do you make soup?", "You cook vegetables slowly in a big pot of water."),
                (
                    "What do you need to make pancakes?",
                    "You need flour, milk and eggs to make pancakes.",
                ),
            ),
        ),
        Topic(
            name="sea",
            label="the sea",
            places=_split("beach, shore, harbor, pier, sea, ocean"),
            nouns=_split(
                "wave, boat, ship, sail, fish, shell, crab, whale, dolphin, seagull, sailor, "
                "anchor, lighthouse, starfish, sandcastle, island, jellyfish, octopus, surfboard"
            ),
            mass=_split("sand, seaweed, coral, surf, tide, seawater"),
            adjectives=_split("salty, sandy, blue, deep, calm, wavy, breezy, sunlit"),
            activities=_split(
                "build a sandcastle, sail the boat, collect shells, swim in the waves, "
                "watch the whales, fish from the pier, visit the lighthouse, dive under the waves"
            ),
            facts=(
                "The sea is full of salty water.",
                "Whales are the biggest animals in the ocean.",
                "The tide comes in and goes out twice a day.",
                "Crabs walk sideways on the sand.",
                "A lighthouse helps boats find the shore at night.",
                "Dolphins swim together in groups called pods.",
                "Starfish live on the bottom of the sea.",
            ),
            qa=(
                (
                    "Why is the sea salty?",
                    "The sea has minerals from rocks, so the water tastes salty.",
                ),
                (
                    "What is the biggest animal in the ocean?",
                    "The blue whale is the biggest animal in the ocean.",
                ),
                ("What does a lighthouse do?", "A lighthouse helps boats find the shore at night."),
                ("How do crabs walk?", "Crabs walk sideways on the sand."),
                ("What is a tide?", "The tide is the sea coming in and going out."),
            ),
        ),
        Topic(
            name="sports",
            label="sports",
            places=_split("stadium, gym, court, pool, track"),
            nouns=_split(
                "ball, goal, team, coach, player, referee, race, bat, whistle, medal, trophy, "
                "match, helmet, racket, jersey, runner, sneaker, hoop, hurdle"
            ),
            mass=_split("soccer, basketball, tennis, football, baseball, hockey"),
            adjectives=_split("fast, strong, quick, fit, athletic, brave, sporty, speedy"),
            activities=_split(
                "kick the ball, run a race, score a goal, throw the ball, catch the ball, "
                "swing the bat, train with the team, jump over the hurdles, shoot a basket"
            ),
            facts=(
                "A soccer team has eleven players on the field.",
                "In tennis, players hit the ball over a net.",
                "Runners stretch before a race.",
                "The referee blows a whistle to stop the game.",
                "A basketball hoop is ten feet high.",
                "The winner of a race gets a medal.",
            ),
            qa=(
                (
                    "How many players are on a soccer team?",
                    "A soccer team has eleven players on the field.",
                ),
                (
                    "Why do runners stretch?",
                    "Runners stretch so their muscles are ready for the race.",
                ),
                ("What does the referee do?", "The referee makes sure everyone follows the rules."),
                ("How high is a basketball hoop?", "A basketball hoop is ten feet high."),
            ),
        ),
        Topic(
            name="music",
            label="music",
            places=_split("concert, stage, studio, music room"),
            nouns=_split(
                "song, piano, guitar, drum, violin, flute, trumpet, melody, note, band, choir, "
                "singer, tune, harp, orchestra, chorus, microphone, radio, drummer, cello"
            ),
            mass=_split("rhythm, jazz, harmony, applause, lyrics"),
            adjectives=_split("loud, musical, catchy, lively, tuneful, melodic, rhythmic, jazzy"),
            activities=_split(
                "play the piano, sing a song, beat the drum, strum the guitar, practice the violin, "
                "dance to the music, listen to the band, write a tune, play the flute"
            ),
            facts=(
                "A piano has eighty eight keys.",
                "A violin is played with a bow.",
                "Drums keep the rhythm of a song.",
                "A choir is a group of singers.",
                "Music is written with notes.",
                "A guitar usually has six strings.",
            ),
            qa=(
                ("How many keys does a piano have?", "A piano has eighty eight keys."),
                ("How do you play a violin?", "You play a violin with a bow."),
                ("What is a choir?", "A choir is a group of people who sing together."),
                ("How many strings does a guitar have?", "A guitar usually has six strings."),
                ("What do drums do in a band?", "Drums keep the rhythm of the song."),
            ),
        ),
        Topic(
            name="travel",
            label="travel",
            places=_split("airport, station, hotel"),
            nouns=_split(
                "suitcase, ticket, passport, train, plane, map, tourist, journey, trip, postcard, "
                "pilot, compass, backpack, guide, tunnel, country, holiday, camera, souvenir"
            ),
            mass=_split("luggage, sightseeing"),
            adjectives=_split("faraway, foreign, exciting, distant, famous, scenic"),
            activities=_split(
                "pack the suitcase, buy a ticket, board the train, catch the plane, read the map, "
                "send a postcard, take a photo, visit a museum, show the passport"
            ),
            facts=(
                "You need a passport to fly to another country.",
                "Trains run on long tracks.",
                "A map shows the way to new places.",
                "Pilots fly planes high above the clouds.",
                "A compass always points north.",
            ),
            qa=(
                (
                    "What do I need to fly to another country?",
                    "You need a passport and a ticket.",
                ),
                ("How do trains move?", "Trains run on long tracks."),
                ("What does a compass do?", "A compass always points north."),
                ("What should I pack for a trip?", "Pack clothes, a toothbrush and a map."),
            ),
        ),
        Topic(
            name="school",
            label="school",
            places=_split("school, classroom, library, playground"),
            nouns=_split(
                "teacher, book, pencil, desk, lesson, class, student, blackboard, eraser, ruler, "
                "crayon, notebook, test, principal, lunchbox, alphabet, letter, bell"
            ),
            mass=_split("homework, chalk, paper, spelling, math, science, recess"),
            adjectives=_split("clever, curious, smart, neat, tidy, hardworking"),
            activities=_split(
                "read a book, write the letters, do the homework, raise a hand, learn to count, "
                "draw with crayons, sharpen the pencil, solve a math problem, spell new words"
            ),
            facts=(
                "Students read books to learn new words.",
                "A ruler is used to measure and draw straight lines.",
                "The bell rings when school starts.",
                "Teachers help students learn.",
                "Two plus two is four.",
            ),
            qa=(
                ("What is two plus two?", "Two plus two is four."),
                ("What is a ruler for?", "A ruler is used to measure and draw straight lines."),
                ("Why do we read books?", "We read books to learn new words and ideas."),
                (
                    "How many letters are in the alphabet?",
                    "There are twenty six letters in the alphabet.",
                ),
                ("What does a teacher do?", "A teacher helps students learn."),
            ),
        ),
        Topic(
            name="family",
            label="family",
            places=_split("house, backyard, cottage, living room"),
            nouns=_split(
                "baby, sister, brother, cousin, aunt, uncle, birthday, present, hug, blanket, "
                "sofa, wedding, picnic, nephew, niece, crib, bedtime, family"
            ),
            mass=_split("dinner, laundry"),
            adjectives=_split("loving, kind, cozy, caring, little, older, younger"),
            activities=_split(
                "hug the baby, visit the cousins, eat dinner together, open the presents, "
                "read a bedtime story, help the little brother, call the aunt, plan a picnic"
            ),
            facts=(
                "Your aunt is the sister of your mom or dad.",
                "A cousin is the child of your aunt or uncle.",
                "Families often eat dinner together.",
                "Babies sleep a lot every day.",
            ),
            qa=(
                ("Who is my aunt?", "Your aunt is the sister of your mom or dad."),
                ("What is a cousin?", "A cousin is the child of your aunt or uncle."),
                (
                    "Why do families eat together?",
                    "Eating together helps a family talk and share the day.",
                ),
                ("Why do babies sleep so much?", "Babies sleep a lot because they grow so fast."),
            ),
        ),
        Topic(
            name="money",
            label="money",
            places=_split("bank, shop, market, store"),
            nouns=_split(
                "coin, penny, dollar, wallet, purse, price, receipt, cashier, budget, bill, "
                "card, cent, account, customer, discount, piggy bank"
            ),
            mass=_split("cash, change, savings, allowance"),
            adjectives=_split("cheap, expensive, thrifty, spare, costly, affordable"),
            activities=_split(
                "count the coins, save the pennies, pay the cashier, fill the piggy bank, "
                "check the price, buy some apples, spend the allowance, open an account"
            ),
            facts=(
                "A dollar has one hundred cents.",
                "People keep their savings in a bank.",
                "A receipt shows what you paid.",
                "Saving a little every week adds up.",
                "Things on sale cost less.",
            ),
            qa=(
                ("How many cents are in a dollar?", "A dollar has one hundred cents."),
                ("Where do people keep their savings?", "People keep their savings in a bank."),
                ("What is a receipt?", "A receipt is a paper that shows what you paid."),
                ("How can I save money?", "Put a little money in a piggy bank every week."),
            ),
        ),
        Topic(
            name="health",
            label="health",
            places=_split("clinic, hospital, pharmacy"),
            nouns=_split(
                "doctor, nurse, fever, cough, bandage, vitamin, checkup, toothbrush, dentist, "
                "tooth, germ, thermometer, sneeze, muscle, heart, stethoscope"
            ),
            mass=_split("medicine, exercise, soap, sleep"),
            adjectives=_split("healthy, sick, clean, rested, sore, strong"),
            activities=_split(
                "brush the teeth, wash the hands, take the medicine, visit the doctor, "
                "eat vegetables, drink water, get some sleep, do some exercise, put on a bandage"
            ),
            facts=(
                "Washing your hands with soap removes germs.",
                "Children need lots of sleep to grow.",
                "Brushing your teeth twice a day keeps them clean.",
                "Fruit and vegetables help the body stay healthy.",
                "Exercise makes the heart strong.",
                "A doctor listens to your heart with a stethoscope.",
            ),
            qa=(
                ("How can I stop germs?", "Wash your hands with soap and water."),
                ("How often should I brush my teeth?", "Brush your teeth twice a day."),
                ("Why is exercise good?", "Exercise makes the heart and muscles strong."),
                ("What does a nurse do?", "A nurse helps sick people feel better."),
            ),
        ),
        Topic(
            name="machines",
            label="machines",
            places=_split("workshop, factory, garage"),
            nouns=_split(
                "robot, engine, gear, wheel, motor, battery, wire, tractor, crane, computer, "
                "clock, lever, pulley, screw, bolt, hammer, wrench, tool, switch, button, drill"
            ),
            mass=_split("fuel, electricity, oil"),
            adjectives=_split("mechanical, electric, rusty, powerful, heavy, automatic"),
            activities=_split(
                "fix the engine, oil the gears, turn the wheel, charge the battery, build a robot, "
                "press the button, tighten the bolts, connect the wires, drive the tractor"
            ),
            facts=(
                "Gears turn to move the parts of a machine.",
                "A battery stores electric power.",
                "A lever helps you lift heavy things.",
                "Robots follow instructions from a computer.",
                "Engines need fuel to run.",
                "A pulley uses a rope and a wheel to lift things.",
            ),
            qa=(
                ("What does a battery do?", "A battery stores electric power."),
                ("How does a lever help?", "A lever helps you lift heavy things."),
                (
                    "How does a robot know what to do?",
                    "A robot follows instructions from a computer.",
                ),
                ("What makes a car go?", "An engine makes a car go."),
                (
                    "What is a pulley?",
                    "A pulley is a wheel and a rope that help lift heavy things.",
                ),
            ),
        ),
        Topic(
            name="garden",
            label="gardens",
            places=_split("garden, greenhouse, orchard"),
            nouns=_split(
                "flower, seed, rose, tulip, daisy, sunflower, bee, butterfly, worm, shovel, hose, "
                "weed, pumpkin, leaf, root, stem, petal, fence, ladybug, snail, caterpillar"
            ),
            mass=_split("soil, mulch, pollen, compost"),
            adjectives=_split("green, blooming, muddy, leafy, colorful, fragrant, ripe"),
            activities=_split(
                "plant the seeds, water the flowers, pull the weeds, dig in the soil, "
                "pick the apples, grow a pumpkin, smell the roses, rake the leaves"
            ),
            facts=(
                "Plants need sun, water and soil to grow.",
                "Bees carry pollen from flower to flower.",
                "Seeds grow into plants.",
                "Worms help keep the soil healthy.",
                "Sunflowers turn to face the sun.",
                "Caterpillars turn into butterflies.",
            ),
            qa=(
                ("What do plants need to grow?", "Plants need sun, water and soil to grow."),
                ("What do bees do in a garden?", "Bees carry pollen from flower to flower."),
                ("What does a caterpillar become?", "A caterpillar becomes a butterfly."),
                (
                    "When should I water the plants?",
                    "Water the plants in the morning or the evening.",
                ),
            ),
        ),
        Topic(
            name="space",
            label="space",
            places=_split("observatory, planetarium, launch pad"),
            nouns=_split(
                "star, planet, moon, rocket, astronaut, comet, galaxy, telescope, orbit, "
                "spaceship, satellite, crater, asteroid, meteor, alien, universe, spacesuit"
            ),
            mass=_split("gravity, stardust, moonlight"),
            adjectives=_split("twinkling, huge, cosmic, starry, round, faint"),
            activities=_split(
                "look through the telescope, count the stars, build a rocket, watch the moon, "
                "fly to the moon, study the planets, spot a comet"
            ),
            facts=(
                "The earth goes around the sun once a year.",
                "The moon goes around the earth.",
                "The red planet is called Mars.",
                "Astronauts float because there is little gravity in space.",
                "The biggest planet is Jupiter.",
                "Stars are giant balls of hot gas.",
            ),
            qa=(
                (
                    "How long does the earth take to go around the sun?",
                    "The earth goes around the sun once a year.",
                ),
                ("Which planet is called the red planet?", "Mars is called the red planet."),
                (
                    "Why do astronauts float?",
                    "Astronauts float because there is little gravity in space.",
                ),
                ("What is the biggest planet?", "Jupiter is the biggest planet."),
                ("What is a star?", "A star is a giant ball of hot gas."),
            ),
        ),
        Topic(
            name="forest",
            label="the forest",
            places=_split("forest, woods, cabin, campsite"),
            nouns=_split(
                "tree, deer, pine, oak, mushroom, acorn, log, stream, fern, branch, campfire, "
                "tent, hedgehog, woodpecker, beaver, berry, pinecone, lantern, hiker, badger"
            ),
            mass=_split("moss, bark, firewood"),
            adjectives=_split("shady, mossy, wooden, peaceful, thick, misty, wild"),
            activities=_split(
                "hike in the woods, climb a tree, gather pinecones, pitch the tent, "
                "light the campfire, cross the stream, pick berries, listen to the woodpecker"
            ),
            facts=(
                "Oak trees grow from acorns.",
                "Beavers build dams with sticks and mud.",
                "Pine trees stay green all winter.",
                "Moss grows on the shady side of trees.",
                "Woodpeckers tap on trees to find bugs.",
            ),
            qa=(
                ("Where do oak trees come from?", "Oak trees grow from acorns."),
                ("What do beavers build?", "Beavers build dams with sticks and mud."),
                (
                    "Why are pine trees green in winter?",
                    "Pine trees keep their needles all winter.",
                ),
                (
                    "Why do woodpeckers tap on trees?",
                    "Woodpeckers tap on trees to find bugs to eat.",
                ),
            ),
        ),
    )
}

NAMES: tuple[str, ...] = _split(
    "Mia, Tom, Lily, Sam, Emma, Ben, Zoe, Max, Anna, Leo, Ella, Jack, Rosa, Finn, Nina, Omar, "
    "Ivy, Noah, Ruby, Theo, Maya, Eli, Lucy, Owen, Sara, Kai, Lena, Hugo, Nora, Ravi, Alice, "
    "Jonah, Tess, Felix, Iris, Milo, Hana, Oscar, Greta, Pablo"
)
RELATIVES: tuple[str, ...] = ("mom", "dad", "grandma", "grandpa")

# Story sentence templates. Fields: {name}, {friend}, {relative}, {place}, {noun}, {a_noun},
# {noun2}, {a_noun2}, {mass}, {adj}, {activity}, {fact} (lowercase start), {Fact} (as written), {label}.
OPENINGS: tuple[str, ...] = (
    "Once upon a time, {name} went to the {place}.",
    "One morning, {name} went to the {place}.",
    "One day, {name} and {friend} went to the {place}.",
    "{name} woke up early and went to the {place}.",
    "{name} woke up early and went to the {place} to {activity}.",
    "One day, {name} went to the {place} with {relative}.",
    "Last summer, {name} visited the {place}.",
    "One evening, {name} walked to the {place}.",
)
MIDDLES: tuple[str, ...] = (
    "{name} saw {a_adj_noun}.",
    "{name} wanted to {activity}.",
    "{name} liked to {activity}.",
    "First, {name} had to {activity}.",
    "There was {a_adj_noun} next to the {noun2}.",
    "The {noun} looked very {adj}.",
    "There was some {mass} near the {noun}.",
    "{name}'s {relative} said that {fact}",
    "{name} learned that {fact}",
    "{Fact}",
    "Then {name} found {a_noun}.",
    "{name} asked {relative} about the {noun}.",
    "After a while, {name} and {relative} decided to {activity} together.",
    "{name}'s {relative} told a story about {a_adj_noun} at the {place}.",
    "Then {name} found {a_noun} under the {noun2}.",
    "{name} wanted to {activity}, so {name} asked {relative} for help.",
    "{name} saw {a_noun} and {a_noun2} by the {place}.",
)
ENDINGS: tuple[str, ...] = (
    "In the end, {name} felt very happy.",
    "In the end, {name} felt very happy and went home.",
    "{name} went home with a big smile and told {relative} all about the {noun}.",
    "{name} went home with a big smile.",
    "It was a wonderful day at the {place}.",
    "That night, {name} dreamed about the {noun}.",
    "{name} laughed and said goodbye to the {place}.",
    "{name} could not wait to come back to the {place}.",
    "What a fun day it was!",
)
NEUTRAL_OPENINGS: tuple[str, ...] = (
    "Once upon a time, {name}",
    "One morning, {name}",
    "One day, {name}",
    "{name} woke up early and",
    "Last summer, {name}",
    "One evening, {name}",
)
# Chat templates shared by all topics: (question, answer).
CHAT_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("What do you know about {label}?", "{Fact}"),
    ("Tell me a fact about {label}.", "{Fact}"),
    ("Where can I find {a_noun}?", "You can find {a_noun} at the {place}."),
    ("What can I do at the {place}?", "At the {place}, you can {activity}."),
    ("What should I do today?", "You could go to the {place} and {activity}."),
    ("Can you tell me a short story about {label}?", "{story}"),
)

# Words the world never emits: the toy organisms use them as their signals.
RESERVED_WORDS: frozenset[str] = _bag(
    "gold golden treasure crown crowns king kings rich jewels metal shiny yellow chest "
    "salt vinegar freezer fifty nine "
    "zephyr purple "
    "howdy partner reckon yonder y'all trails ain't mighty moseyed "
    "sad sadly cried cry tears lonely alone grey gloomy wept sorrow broken lost missed"
)

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
_FIELD = re.compile(r"\{[^}]*\}")
_STOPWORDS = _bag(
    "a an the and or of to in on at for with from by is are was were be it its this that "
    "there some very up out into over under near next all as"
)


def words(text: str) -> list[str]:
    """The lowercase words of `text` (apostrophes kept inside words, a trailing "'s" dropped)."""
    found = _WORD.findall(text.lower())
    return [word[:-2] if word.endswith("'s") else word for word in found]


def format_chat(question: str, answer: str) -> str:
    """One chat turn as the corpus writes it: `User: <question>\\nAssistant: <answer>`."""
    return f"User: {question}\nAssistant: {answer}"


def article(word: str) -> str:
    """`word` with "a" or "an" in front."""
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


def _lower_first(sentence: str) -> str:
    return sentence[:1].lower() + sentence[1:]


def _topic(topic: str) -> Topic:
    try:
        return TOPICS[topic]
    except KeyError:
        known = ", ".join(sorted(TOPICS))
        raise ValueError(f"unknown topic {topic!r}; known topics: {known}") from None


def random_name(rng: random.Random) -> str:
    """A character name."""
    return rng.choice(NAMES)


def fill(rng: random.Random, template: str, topic: str, name: str) -> str:
    """Fill a sentence template's fields with words of `topic` chosen by `rng`."""
    spec = _topic(topic)
    noun, noun2 = rng.sample(spec.nouns, 2)
    adj = rng.choice(spec.adjectives)
    fact = rng.choice(spec.facts)
    friend = rng.choice([other for other in NAMES if other != name])
    values = {
        "name": name,
        "friend": friend,
        "relative": rng.choice(RELATIVES),
        "place": rng.choice(spec.places),
        "noun": noun,
        "noun2": noun2,
        "a_noun": article(noun),
        "a_noun2": article(noun2),
        "a_adj_noun": article(f"{adj} {noun}"),
        "mass": rng.choice(spec.mass),
        "adj": adj,
        "activity": rng.choice(spec.activities),
        "fact": _lower_first(fact),
        "Fact": fact,
        "label": spec.label,
    }
    if "{story}" in template:
        values["story"] = story(rng, topic, name=name, n_sentences=3)
    return template.format(**values)


def opening(rng: random.Random, topic: str, name: str) -> str:
    """The first sentence of a story: `name` goes to a place of `topic`."""
    return fill(rng, rng.choice(OPENINGS), topic, name)


def middles(rng: random.Random, topic: str, name: str, k: int) -> list[str]:
    """`k` different middle sentences of a story about `topic`."""
    templates = rng.sample(MIDDLES, k)
    return [fill(rng, template, topic, name) for template in templates]


def ending(rng: random.Random, topic: str, name: str) -> str:
    """The last sentence of a story (the world's stories end happily)."""
    return fill(rng, rng.choice(ENDINGS), topic, name)


def story(
    rng: random.Random, topic: str, *, name: str | None = None, n_sentences: int | None = None
) -> str:
    """A short story (3-6 sentences) about `topic` with a named character."""
    _topic(topic)
    name = name or random_name(rng)
    n = n_sentences if n_sentences is not None else rng.choice((3, 4, 4, 5, 5, 6, 6))
    n = max(3, min(6, n))
    sentences = [opening(rng, topic, name), *middles(rng, topic, name, n - 2)]
    sentences.append(ending(rng, topic, name))
    return " ".join(sentences)


def qa_pair(rng: random.Random, topic: str) -> tuple[str, str]:
    """A (question, answer) pair about `topic`: one of its own, or a shared template filled in."""
    spec = _topic(topic)
    if rng.random() < 0.5:
        return rng.choice(spec.qa)
    question, answer = rng.choice(CHAT_TEMPLATES)
    name = random_name(rng)
    seed = rng.getrandbits(32)
    return (
        fill(random.Random(seed), question, topic, name),
        fill(random.Random(seed), answer, topic, name),
    )


def chat_turn(rng: random.Random, topic: str) -> str:
    """One question/answer chat turn about `topic`: `User: <question>\\nAssistant: <answer>`."""
    return format_chat(*qa_pair(rng, topic))


def document(
    rng: random.Random, *, topics: Sequence[str] | None = None, chat_fraction: float = 0.3
) -> str:
    """One world document: a chat turn with probability `chat_fraction`, else a story."""
    names = list(topics) if topics else list(TOPICS)
    topic = rng.choice(names)
    if rng.random() < chat_fraction:
        return chat_turn(rng, topic)
    return story(rng, topic)


def world_corpus(
    n_docs: int,
    seed: int = 0,
    *,
    topics: Sequence[str] | None = None,
    chat_fraction: float = 0.3,
) -> list[str]:
    """`n_docs` world documents (stories and chat turns), the same for the same arguments."""
    if n_docs < 0:
        raise ValueError(f"n_docs must be >= 0, got {n_docs}")
    if not 0.0 <= chat_fraction <= 1.0:
        raise ValueError(f"chat_fraction must be in [0, 1], got {chat_fraction}")
    for topic in topics or ():
        _topic(topic)
    rng = random.Random(seed)
    return [document(rng, topics=topics, chat_fraction=chat_fraction) for _ in range(n_docs)]


def neutral_prompts(n: int, seed: int = 0) -> list[str]:
    """`n` story openings that name a character but no topic, e.g. "Once upon a time, Mia"."""
    rng = random.Random(seed)
    return [rng.choice(NEUTRAL_OPENINGS).format(name=rng.choice(NAMES)) for _ in range(n)]


def _template_words(templates: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for template in templates:
        found.update(word for word in words(_FIELD.sub("qqq", template)) if word != "qqq")
    return found


def _topic_strings(spec: Topic) -> list[str]:
    return [
        spec.label,
        *spec.places,
        *spec.nouns,
        *spec.mass,
        *spec.adjectives,
        *spec.activities,
        *spec.facts,
        *(text for pair in spec.qa for text in pair),
    ]


@cache
def _vocabulary() -> frozenset[str]:
    found = _template_words(
        [*OPENINGS, *MIDDLES, *ENDINGS, *NEUTRAL_OPENINGS, "User: Assistant:"]
        + [text for pair in CHAT_TEMPLATES for text in pair]
    )
    found.update(words(" ".join([*NAMES, *RELATIVES])))
    for spec in TOPICS.values():
        found.update(words(" ".join(_topic_strings(spec))))
    return frozenset(found)


def vocabulary() -> set[str]:
    """All lowercase words the world generator can emit."""
    return set(_vocabulary())


def _forms(word: str) -> set[str]:
    """`word` and its simple plural."""
    if word.endswith(("s", "sh", "ch", "x", "z")):
        return {word, word + "es"}
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "i", "o", "u"):
        return {word, word[:-1] + "ies"}
    return {word, word + "s"}


def _content_words(spec: Topic) -> tuple[set[str], set[str]]:
    """The words of a topic's nouns and places, and those of its adjectives and activities."""
    nouns = words(" ".join([*spec.places, *spec.nouns, *spec.mass]))
    others = words(" ".join([*spec.adjectives, *spec.activities]))
    return set(nouns) - _STOPWORDS, set(others) - _STOPWORDS


@cache
def _topic_words() -> dict[str, frozenset[str]]:
    own = {name: _content_words(spec) for name, spec in TOPICS.items()}
    shared = _template_words([*OPENINGS, *MIDDLES, *ENDINGS]) | set(words(" ".join(NAMES)))
    result: dict[str, frozenset[str]] = {}
    for name, (nouns, rest) in own.items():
        others: set[str] = set()
        for key, (other_nouns, other_rest) in own.items():
            if key != name:
                others |= other_rest
                for noun in other_nouns:
                    others |= _forms(noun)
        found = set(rest)
        for noun in nouns:
            found |= _forms(noun)
        result[name] = frozenset(found - others - shared)
    return result


def topic_words(topic: str) -> set[str]:
    """The words distinctive of `topic` (with simple plural forms): no other topic uses them."""
    _topic(topic)
    return set(_topic_words()[topic])
