"""Generate the text example's data: templated support messages in four intents (no download).

Intents (labels): 0 billing, 1 delivery, 2 technical problem, 3 account access. Three
domains share them, each with its own templates and vocabulary:

- ``pretrain.csv``: broad data, general sentences (news, forums, everyday life) about
  money, post and transport, software and devices, passwords and identity;
- ``task.csv``: the deployment's data (the bootstrap rows): an online shop's support tickets;
- ``adapt.csv``: a shifted domain for the adaptation stage: a mobile carrier's support chat,
  informal, with its own words (top-up, SIM, signal, PUK, quid);
- ``stream/part-001.csv``: for ``driftloop run``: 300 more shop tickets, then 900 tickets
  in Spanish (the shop opens in Spain: a language no stage saw, so the error drifts).

A row is the sentence's all-MiniLM-L6-v2 token ids (``t00`` … ``t31``, 0-padded), as the
``text`` model reads it; ``sentences.csv`` holds the sentences themselves, by row id, and
``sentences/`` the same files as sentences (a ``type: text`` column tokenizes them).
A few labels are flipped (``NOISE``), as in real tickets, so no set is perfectly separable.

Usage: python configs/data/text/generate.py   (deterministic; rewrites the files)
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from strategies.text import token_columns, tokenize

HERE = Path(__file__).resolve().parent
MAX_LENGTH = 32
NOISE = 0.03
SLOT = re.compile(r"\{(\w+)\}")

BROAD: dict[int, list[str]] = {
    0: ["the bank raised its {fee} again this {period}",
        "prices went up and my {bill} is higher than last {period}",
        "she paid the {bill} by card but the {fee} was added twice",
        "investors worry that {fee}s on loans will keep rising",
        "the refund for the cancelled trip took a whole {period}",
        "how do you split a restaurant {bill} fairly between friends",
        "the council sent an invoice with the wrong amount",
        "my salary came in late so a payment bounced"],
    1: ["the {parcel} was stuck at the sorting centre for a {period}",
        "trains across the region were delayed by the storm",
        "the courier left the {parcel} with a neighbour",
        "postal workers warn of {delay}s before the holidays",
        "the shipment of spare parts never reached the port",
        "he tracked the {parcel} online but it showed no movement",
        "the removal van arrived two days {delay}",
        "freight costs rose as ships waited outside the harbour"],
    2: ["the new {software} update made laptops freeze on startup",
        "my {device} keeps crashing whenever I open the camera",
        "engineers fixed a bug that slowed the {software} down",
        "the website went down for an hour after the release",
        "the printer shows an error code and will not print",
        "after the upgrade the {device} drains its battery in an hour",
        "the game stutters and the screen goes black",
        "a server fault took the booking system offline"],
    3: ["experts say you should never reuse a {secret}",
        "hackers stole thousands of {secret}s in the breach",
        "she was locked out after typing the wrong {secret} three times",
        "two factor codes make it harder to take over a profile",
        "he forgot the email address linked to his profile",
        "the verification code never arrived so he could not sign in",
        "identity theft often starts with a phishing email",
        "the forum asks users to reset their {secret} every year"],
}
SHOP: dict[int, list[str]] = {
    0: ["I was charged twice for order {order}",
        "the {fee} on my invoice for order {order} looks wrong",
        "please refund the {amount} you took for a cancelled order",
        "my card was declined at checkout but the money left my account",
        "why does my receipt show {amount} instead of the sale price",
        "I returned the item {n} weeks ago and still have no refund",
        "the voucher was not applied and I paid full price",
        "can I get an invoice with my company's tax number"],
    1: ["my {parcel} for order {order} has not arrived yet",
        "the tracking page has not updated for {n} days",
        "the courier says delivered but there is no {parcel} at my door",
        "order {order} arrived damaged and half the items are missing",
        "can you change the delivery address for order {order}",
        "the delivery was {delay} again, when will it come",
        "I chose express shipping and it is still in the warehouse",
        "the wrong {parcel} was delivered to me"],
    2: ["the checkout page shows an error when I press pay",
        "your {software} crashes every time I open my basket",
        "the product pictures do not load on my {device}",
        "the site keeps logging an internal server error",
        "the search bar returns nothing even for items you sell",
        "the {software} freezes on the loading screen",
        "buttons on the payment page do nothing on my {device}",
        "the page times out before the order is confirmed"],
    3: ["I cannot log in to my account since yesterday",
        "the {secret} reset email never arrives",
        "my account was locked after too many attempts",
        "someone changed the email address on my account",
        "how do I delete my customer account and my data",
        "the verification code for signing in is not accepted",
        "I forgot my {secret} and the reset link has expired",
        "I think my account was hacked, there are orders I did not make"],
}
CARRIER: dict[int, list[str]] = {
    0: ["why did u take {quid} quid off me twice this month",
        "my top up went thru but no credit on the sim",
        "been billed for roaming when i never left the country",
        "u charged me for a bundle i cancelled, want my money back",
        "direct debit came out early and now im overdrawn",
        "bill says {quid} quid but my plan is {plan} a month"],
    1: ["new sim never turned up in the post",
        "handset upgrade still not here, courier has no clue",
        "replacement phone was meant to come {day}, nothing yet",
        "the sim pack came with no card inside",
        "got a text saying out for delivery {day} but no van showed",
        "posted my old phone back, how long til u get it"],
    2: ["no signal at all since the mast work",
        "4g keeps dropping out, cant even load a page",
        "calls cut off after a few seconds every time",
        "esim wont activate, just says error {code}",
        "wifi calling stopped working after the phone update",
        "texts not sending, says message failed"],
    3: ["locked out, it wants my puk code",
        "cant get into the my account app, pw reset not working",
        "someone did a sim swap on my number",
        "two step code never comes so i cant sign in",
        "forgot my pin and security answer",
        "my login page just loops back, acct blocked"],
}
SPANISH: dict[int, list[str]] = {
    0: ["me han cobrado dos veces el pedido {order}",
        "quiero la devolución de {euros} euros de un pedido cancelado",
        "el cupón no se aplicó y pagué el precio completo",
        "la factura del pedido {order} tiene un importe incorrecto",
        "mi tarjeta fue rechazada pero el dinero salió de mi cuenta"],
    1: ["mi paquete del pedido {order} todavía no ha llegado",
        "el seguimiento no se actualiza desde hace {dias} días",
        "el repartidor dice entregado pero no hay ningún paquete",
        "el pedido llegó roto y faltan artículos",
        "¿pueden cambiar la dirección de entrega del pedido {order}?"],
    2: ["la página de pago da un error al pulsar pagar",
        "la aplicación se cierra cada vez que abro la cesta",
        "las fotos de los productos no cargan en mi {aparato}",
        "la web se queda congelada en la pantalla de carga",
        "el buscador no devuelve nada"],
    3: ["no puedo iniciar sesión en mi cuenta desde ayer",
        "el correo para restablecer la contraseña nunca llega",
        "mi cuenta está bloqueada por demasiados intentos",
        "alguien cambió el correo electrónico de mi cuenta",
        "el código de verificación no funciona"],
}
FILL: dict[str, list[str]] = {
    "fee": ["fee", "charge", "interest rate", "surcharge"],
    "period": ["month", "week", "year", "quarter"],
    "bill": ["bill", "invoice", "statement"],
    "parcel": ["parcel", "package", "box", "delivery"],
    "delay": ["late", "delayed", "overdue"],
    "software": ["app", "program", "website", "browser"],
    "device": ["phone", "tablet", "laptop", "computer"],
    "secret": ["password", "passcode", "PIN", "passphrase"],
    "amount": ["the full amount", "forty euros", "the delivery fee", "extra money"],
    "order": [str(n) for n in range(1000, 10000, 937)],
    "n": ["three", "five", "six", "ten"],
    "quid": ["10", "15", "20", "35"],
    "plan": ["12", "18", "25"],
    "day": ["monday", "tuesday", "yesterday", "today"],
    "euros": ["20", "35", "49", "120"],
    "dias": ["tres", "cinco", "diez"],
    "aparato": ["móvil", "tableta", "ordenador"],
    "code": ["e12", "403", "sim-7", "55"],
}
OPENERS = {"broad": ["", "", "news: ", "today "], "shop": ["", "hello, ", "hi, ", "dear team, "],
           "carrier": ["", "", "hi ", "pls help "], "spanish": ["", "hola, ", "buenos días, "]}
CLOSERS = {"broad": ["", "", ".", "."], "shop": [".", ". thanks", ". please help", "!"],
           "carrier": ["", "??", " pls", " !!"], "spanish": [".", ". gracias", ". ayuda por favor"]}


def sentences(templates: dict[int, list[str]], domain: str, n: int,
              rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """``n`` sentences, classes balanced, slots filled at random; a few labels flipped."""
    labels = np.arange(n) % len(templates)
    rng.shuffle(labels)
    out = []
    for c in labels:
        tpl = str(rng.choice(templates[int(c)]))
        text = SLOT.sub(lambda m: str(rng.choice(FILL[m.group(1)])), tpl)
        out.append(f"{rng.choice(OPENERS[domain])}{text}{rng.choice(CLOSERS[domain])}")
    flip = rng.random(n) < NOISE
    labels[flip] = (labels[flip] + rng.integers(1, len(templates), flip.sum())) % len(templates)
    return out, labels


def frame(texts: list[str], labels: np.ndarray, first_id: int) -> pd.DataFrame:
    ids = tokenize(texts, MAX_LENGTH).numpy().astype(np.int64)
    df = pd.DataFrame(ids, columns=token_columns(MAX_LENGTH))
    df.insert(0, "row_id", [f"r{first_id + i}" for i in range(len(df))])
    df["label"] = labels.astype(int)
    return df


def main() -> None:
    rng = np.random.default_rng(2026)
    sets = {
        "pretrain.csv": (sentences(BROAD, "broad", 600, rng), 0),
        "task.csv": (sentences(SHOP, "shop", 800, rng), 100_000),
        "adapt.csv": (sentences(CARRIER, "carrier", 400, rng), 200_000),
    }
    shop_more = sentences(SHOP, "shop", 300, rng)
    spanish = sentences(SPANISH, "spanish", 900, rng)
    stream = (shop_more[0] + spanish[0], np.concatenate([shop_more[1], spanish[1]]))
    (HERE / "stream").mkdir(exist_ok=True)
    sets["stream/part-001.csv"] = (stream, 300_000)
    readable = []
    for name, ((texts, labels), first_id) in sets.items():
        df = frame(texts, labels, first_id)
        df.to_csv(HERE / name, index=False)
        readable.append(pd.DataFrame({"file": name, "row_id": df["row_id"], "text": texts,
                                      "label": df["label"]}))
    pd.concat(readable).to_csv(HERE / "sentences.csv", index=False)
    write_sentences(pd.concat(readable))


def write_sentences(readable: pd.DataFrame) -> None:
    """The same rows as sentences (``row_id,text,label``) under ``sentences/``, for a
    schema with a ``type: text`` column (configs/text_column.yaml)."""
    for name, part in readable.groupby("file", sort=False):
        path = HERE / "sentences" / str(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        part[["row_id", "text", "label"]].to_csv(path, index=False)


if __name__ == "__main__":
    main()
