"""Names, addresses, contact points and identifiers for synthetic people.

The MedArchive UI is bilingual, so a share of the population are Chinese patients whose official
name is written in Chinese characters (``HumanName.text``, ``family`` and ``given`` as
characters) with a usual romanized name beside it. Everything here is invented: street names
are generic, telephone numbers use the 555-01xx block reserved for fiction, e-mail addresses use
the reserved domain example.com, and national identifiers start with 9, a range the US Social
Security Administration never issues, so no value can belong to a real person.
"""

from __future__ import annotations

import random
from typing import Any

from medarchive.demo.codes import BCP47, MARITAL, MRN_TYPE, SSN_TYPE, US_SSN, Code

MALE_GIVEN = ("James", "John", "Robert", "Michael", "William", "David", "Richard", "Joseph",
              "Thomas", "Charles", "Daniel", "Matthew", "Anthony", "Mark", "Steven", "Paul",
              "Andrew", "Joshua", "Kevin", "Brian", "George", "Edward", "Ryan", "Jacob",
              "Gary", "Eric", "Samuel", "Benjamin", "Carlos", "Luis")
FEMALE_GIVEN = ("Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan",
                "Jessica", "Sarah", "Karen", "Nancy", "Lisa", "Margaret", "Sandra", "Ashley",
                "Emily", "Donna", "Michelle", "Carol", "Amanda", "Melissa", "Deborah",
                "Stephanie", "Rebecca", "Laura", "Sharon", "Olivia", "Emma", "Maria", "Sofia")
FAMILY = ("Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
          "Rodriguez", "Martinez", "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas",
          "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris",
          "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King",
          "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson",
          "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Patel")

# (characters, pinyin)
CHINESE_FAMILY = (("王", "Wang"), ("李", "Li"), ("张", "Zhang"), ("刘", "Liu"), ("陈", "Chen"),
                  ("杨", "Yang"), ("黄", "Huang"), ("赵", "Zhao"), ("吴", "Wu"), ("周", "Zhou"),
                  ("徐", "Xu"), ("孙", "Sun"), ("马", "Ma"), ("朱", "Zhu"), ("胡", "Hu"),
                  ("郭", "Guo"), ("何", "He"), ("林", "Lin"), ("高", "Gao"), ("罗", "Luo"),
                  ("郑", "Zheng"), ("梁", "Liang"), ("谢", "Xie"), ("宋", "Song"), ("唐", "Tang"))
CHINESE_MALE = (("伟", "Wei"), ("强", "Qiang"), ("磊", "Lei"), ("军", "Jun"), ("勇", "Yong"),
                ("杰", "Jie"), ("涛", "Tao"), ("明", "Ming"), ("超", "Chao"), ("浩然", "Haoran"),
                ("子轩", "Zixuan"), ("宇航", "Yuhang"), ("俊杰", "Junjie"), ("建国", "Jianguo"),
                ("志强", "Zhiqiang"), ("文博", "Wenbo"), ("国栋", "Guodong"), ("晨", "Chen"))
CHINESE_FEMALE = (("芳", "Fang"), ("娜", "Na"), ("敏", "Min"), ("静", "Jing"), ("丽", "Li"),
                  ("婷", "Ting"), ("雪", "Xue"), ("慧", "Hui"), ("秀英", "Xiuying"),
                  ("桂英", "Guiying"), ("欣怡", "Xinyi"), ("梓涵", "Zihan"), ("雨桐", "Yutong"),
                  ("佳怡", "Jiayi"), ("美玲", "Meiling"), ("晓燕", "Xiaoyan"), ("玉兰", "Yulan"),
                  ("思雨", "Siyu"))

STREETS = ("Maple", "Oak", "Cedar", "Pine", "Elm", "Walnut", "Willow", "Lake", "Hill", "Park",
           "Washington", "Lincoln", "Jefferson", "Madison", "Franklin", "Sunset", "River",
           "Spring", "Highland", "Meadow", "Church", "Mill", "Orchard", "Harbor", "Bay")
SUFFIXES = ("Street", "Avenue", "Road", "Lane", "Drive", "Court", "Boulevard", "Way")
# (city, postal code prefix): the demo hospital's catchment area, invented town names.
CITIES = (("Riverton", "950"), ("Lakeside", "951"), ("Oak Hill", "952"), ("Millbrook", "953"),
          ("Fairview", "954"), ("Cedar Falls", "955"), ("Westport", "956"), ("Harbor City", "957"))
STATE = "CA"
AREA_CODES = ("415", "510", "628", "650", "925")

CHINESE_LANGUAGES = (Code(BCP47, "zh-CN", "Chinese (China)"),
                     Code(BCP47, "zh-TW", "Chinese (Taiwan)"),
                     Code(BCP47, "zh-HK", "Chinese (Hong Kong)"))
ENGLISH = Code(BCP47, "en-US", "English (United States)")


def person_name(rng: random.Random, female: bool, chinese: bool,
                prefix: str | None = None) -> list[dict[str, Any]]:
    """HumanName list (R4 §2.24.0.11): official name, and for Chinese people a romanized one."""
    if chinese:
        family, family_pinyin = CHINESE_FAMILY[int(rng.random() * len(CHINESE_FAMILY))]
        chinese_given = CHINESE_FEMALE if female else CHINESE_MALE
        given, given_pinyin = chinese_given[int(rng.random() * len(chinese_given))]
        official: dict[str, Any] = {"use": "official", "text": family + given, "family": family,
                                    "given": [given]}
        usual: dict[str, Any] = {"use": "usual", "text": f"{given_pinyin} {family_pinyin}",
                                 "family": family_pinyin, "given": [given_pinyin]}
        if prefix:
            usual["prefix"] = [prefix]
        return [official, usual]
    table = FEMALE_GIVEN if female else MALE_GIVEN
    given_name = table[int(rng.random() * len(table))]
    family_name = FAMILY[int(rng.random() * len(FAMILY))]
    name: dict[str, Any] = {"use": "official", "text": f"{given_name} {family_name}",
                            "family": family_name, "given": [given_name]}
    if rng.random() < 0.4:
        middle = table[int(rng.random() * len(table))]
        if middle != given_name:
            name["given"].append(middle)
            name["text"] = f"{given_name} {middle[0]}. {family_name}"
    if prefix:
        name["prefix"] = [prefix]
    return [name]


def address(rng: random.Random) -> dict[str, Any]:
    """A home Address (R4 §2.24.0.12) in the hospital's catchment area."""
    city, zip_prefix = CITIES[int(rng.random() * len(CITIES))]
    street = (f"{int(rng.random() * 9800) + 100} {STREETS[int(rng.random() * len(STREETS))]} "
              f"{SUFFIXES[int(rng.random() * len(SUFFIXES))]}")
    lines = [street]
    if rng.random() < 0.25:
        lines.append(f"Apt {int(rng.random() * 30) + 1}{'ABCD'[int(rng.random() * 4)]}")
    return {"use": "home", "type": "both", "line": lines, "city": city, "state": STATE,
            "postalCode": f"{zip_prefix}{int(rng.random() * 100):02d}", "country": "US"}


def phone(rng: random.Random) -> str:
    area = AREA_CODES[int(rng.random() * len(AREA_CODES))]
    return f"({area}) 555-01{int(rng.random() * 100):02d}"


def telecom(rng: random.Random, name: dict[str, Any], age: float) -> list[dict[str, Any]]:
    """ContactPoints (R4 §2.24.0.13): a phone for everyone, mobile and e-mail for most adults."""
    points: list[dict[str, Any]] = [{"system": "phone", "value": phone(rng), "use": "home"}]
    if age >= 14 and rng.random() < 0.8:
        points.append({"system": "phone", "value": phone(rng), "use": "mobile", "rank": 1})
    if age >= 16 and rng.random() < 0.6:
        local = "".join(ch for ch in name["text"].lower().replace(" ", ".")
                        if ch.isascii() and (ch.isalnum() or ch == "."))
        points.append({"system": "email",
                       "value": f"{local or 'patient'}{int(rng.random() * 100)}@example.com",
                       "use": "home"})
    return points


def mrn_identifier(system: str, value: str) -> dict[str, Any]:
    """The hospital medical record number (Identifier type MR, v2 table 0203)."""
    return {"use": "usual", "type": MRN_TYPE.concept(), "system": system, "value": value}


def national_identifier(rng: random.Random) -> dict[str, Any]:
    """A national identifier in US SSN shape, always in the never-issued 9xx area."""
    value = (f"9{int(rng.random() * 100):02d}-{int(rng.random() * 99) + 1:02d}-"
             f"{int(rng.random() * 9999) + 1:04d}")
    return {"use": "official", "type": SSN_TYPE.concept(), "system": US_SSN, "value": value}


_MARITAL_BY_AGE = (  # (upper age bound, cumulative weights for S, M, D, W)
    (30, (0.70, 0.98, 1.0, 1.0)),
    (50, (0.25, 0.85, 1.0, 1.0)),
    (70, (0.10, 0.75, 0.92, 1.0)),
    (200, (0.05, 0.55, 0.65, 1.0)),
)


def marital_status(rng: random.Random, age: float) -> dict[str, Any] | None:
    """Patient.maritalStatus (extensible binding to marital-status), None for children."""
    if age < 18:
        return None
    draw = rng.random()
    for bound, cumulative in _MARITAL_BY_AGE:
        if age < bound:
            for code, edge in zip("SMDW", cumulative, strict=True):
                if draw < edge:
                    return MARITAL[code].concept()
    return MARITAL["M"].concept()


def communication(rng: random.Random, chinese: bool) -> list[dict[str, Any]]:
    """Patient.communication: the language the patient prefers to be spoken to in."""
    if chinese and rng.random() < 0.6:
        language = CHINESE_LANGUAGES[0 if rng.random() < 0.7 else 1 + int(rng.random() * 2)]
        return [{"language": language.concept(), "preferred": True},
                {"language": ENGLISH.concept()}]
    return [{"language": ENGLISH.concept(), "preferred": True}]


