"""What does the person want? One interface, two implementations.

* ``RuleUnderstander`` (``understand(message, has_urls)``): the rule-based understanding, cachebot's embedded
  default. Keywords in English, German, French, Spanish and Dutch; deterministic, no network.
* ``agent.llm.ModelUnderstander``: an OpenAI-compatible chat model returning a validated structure; it falls
  back to the rules whenever the model fails.

Both answer ``understand_request(message, sites) -> Understanding``. URLs are found elsewhere (``agent.urls``),
deterministically; the understanding only decides the intent, the scope and which of the listed URLs are meant
(by placeholder number), so it works the same for one URL or five hundred. ``mask_urls`` gives the message with
every URL replaced by a placeholder — what a model sees instead of the URLs. Message text is data: nothing here
can grant approval, add a host or widen the scope silently; policy is applied later regardless.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from agent.models import Intent
from agent.urls import extract_candidates

SLACK_TOKEN = re.compile(r"<[@#!][^>]*>")
LINK = re.compile(r"<[^>\s]+>|\b(?:https?|ftp|file|javascript|data|mailto):\S+|\bwww\.\S+", re.IGNORECASE)

Scope = Literal["urls", "prefix", "tag", "site"]
FALLBACK_NOTE = "(The language model was unavailable, so I used simple rules.)"

# ------------------------------------------------------------------------------------------------ keywords
# Each pattern lists English first, then German, French, Spanish, Dutch. Typos seen in Slack are included
# where they are common ("purg", "cach", "chache").

HELP = re.compile(
    r"^\s*\?+\s*$|^\W*(?:(?:hey|hi|hello|hallo|salut|hola|hoi)\b[\s,]*(?:bot\b[\s,]*)?)?(help|hilfe|aide|ayuda|hulp|what can you do|what do you do|how does this( bot)? work"
    r"|how (do|can|should) (i|we|you) use|what are you for|usage|commands?|was kannst du|wie funktioniert|que (sais-tu|peux-tu) faire"
    r"|comment (ça|ca) marche|qu[ée] puedes hacer|c[oó]mo funciona|wat kun je|hoe werkt)\b",
    re.IGNORECASE,
)
HISTORY = re.compile(
    r"\b(history|log of purges|audit log|verlauf|historique|historial|geschiedenis)\b"
    r"|\b(who|wer|qui|qui[eé]n|wie)\b.{0,30}\b(purged|cleared|flushed|geleert|gel[oö]scht|purg[eé]|vid[eé]"
    r"|borr[oó]|limpi[oó]|gewist|geleegd)\b"
    r"|\bwhat (was|got|did you|have you)\b.{0,20}\b(purg\w*|clear(ed)?|flush(ed)?)\b"
    r"|\bwhat happened (to|with)\b.{0,30}\b(purge|request|clear)"
    r"|\b(last|recent|previous|past) (purges|cache clears|runs)\b"
    r"|\bwhen (was|did)\b.{0,40}\b(last )?(purged|cleared|flushed)\b"
    r"|\b(letzten|vorherigen) (purges|leerungen|l[oö]schungen)\b|\bwann wurde\b.{0,40}\b(geleert|gel[oö]scht)\b"
    r"|\bderni[eè]res? (purges|vidages)\b|\b[uú]ltimas? (purgas|limpiezas)\b|\blaatste (purges|leegacties)\b",
    re.IGNORECASE,
)
_ALL_WORDS = (
    r"everything|entire|whole|full cache|all (the )?(cache|caches|pages|of it|product pages|pages under|urls under)"
    r"|site-?wide|every page|every \w+ pages?|all pages|all product|complete cache|"
    r"alles|gesamten?|ganzen?|komplett\w*|s[äa]mtliche|alle seiten|"
    r"tout|toute?s? les pages|enti[eè]re?|complet|"
    r"todo|toda|todas las p[aá]ginas|entero|completo|"
    r"hele|volledige|alle pagina'?s"
)
PURGE_ALL = re.compile(
    r"\b(purge|purg|clear|flush|wipe|invalidate|bust|empty|reset|nuke|drop|leer\w*|l[oö]sch\w*|vide[rz]?|videz"
    r"|purger|purgez|efface[rz]?|borra\w*|limpia\w*|vac[ií]a\w*|purga\w*|wis\w*|leeg\w*|legen)\b.{0,50}"
    rf"\b({_ALL_WORDS})\b"
    rf"|\b({_ALL_WORDS})\b.{{0,40}}\b(purge|purg|clear|flush|wipe|invalidate|leeren|l[oö]schen|vider|purger"
    r"|borrar|limpiar|vaciar|purgar|legen|wissen|leegmaken)\b"
    r"|\b(purge|clear|flush) all\b|\bnuke\b|\bpurge everything\b|\ball (the )?caches\b",
    re.IGNORECASE,
)
# Questions about the state of a page: they only count as a check when the message is a question (a "?", or
# it starts with the question word), so "<url> is showing stale prices" stays a purge request.
CHECK_QUESTION = re.compile(
    r"\b(is|are|was|does|do|did|has|have)\b.{0,80}\b(cached|in (the )?cache|stale|fresh|up to date|updated"
    r"|out of date|served from|old|outdated|current)\b"
    r"|\bwhy\b.{0,80}\b(stale|old|outdated|not updat\w*|still|wrong|previous)\b"
    r"|\bhow (old|stale|fresh)\b|\bis there\b.{0,40}\bcache"
    # de
    r"|\b(ist|sind|wird|werden)\b.{0,80}\b(gecach\w*|im cache|veraltet|aktuell|alt|frisch)\b"
    r"|\bwarum\b.{0,80}\b(alt\w*|veraltet|noch|nicht aktuell)\b"
    # fr
    r"|\best-ce que?\b.{0,80}\b(en cache|cach[ée]e?s?|[àa] jour|p[ée]rim[ée]e?s?|ancien\w*|vieux)\b"
    r"|\bpourquoi\b.{0,80}\b(ancien\w*|vieux|vieille|toujours|encore|p[ée]rim[ée])\b"
    r"|\best (en cache|[àa] jour|p[ée]rim[ée])"
    # es
    r"|\b(est[aá]n?)\b.{0,80}\b(en (la )?cach[eé]|cacheada?s?|actualizada?s?|desactualizada?s?|vieja?s?)\b"
    r"|\bpor ?qu[eé]\b.{0,80}\b(viej\w*|antigu\w*|todav[ií]a|sigue|desactualizad\w*)\b"
    # nl
    r"|\b(is|zijn|staat|staan)\b.{0,80}\b(gecached|gecachet|in de cache|verouderd|actueel|oud)\b"
    r"|\bwaarom\b.{0,80}\b(oud\w*|verouderd|nog steeds|nog)\b",
    re.IGNORECASE,
)
# Words that ask to look, not to purge, whatever the sentence form.
CHECK_VERB = re.compile(
    r"\b(check|chekc|chek|status|inspect|diagnose|look at|take a look|find out)\b|\bwhich (layer|cache)"
    r"|\b(pr[üu]f\w*|[üu]berpr[üu]f\w*|nachsehen|nachschauen)\b"
    r"|\b(v[ée]rifie[rz]?|regarde[rz]?|contr[ôo]le[rz]?)\b"
    r"|\b(comprueba\w*|revisa[rn]?|revise|verifica[rn]?|verifique|mira si|f[ií]jate si)\b"
    r"|\b(controleer|controleren|bekijk|nakijken)\b",
    re.IGNORECASE,
)
PURGE = re.compile(
    r"\b(purge|purg|clear|flush|refresh|invalidate|bust|reset|update|remove|delete|wipe|evict|nuke|kill)\w*"
    r"|\b(old|stale|outdated|wrong|previous)\b|\bstill (show|display|has|have|serv)\w*|\bcach\w*|\bchache\w*"
    # de
    r"|\b(leer\w*|l[öo]sch\w*|aktualisier\w*|erneuer\w*|entfern\w*|veraltet\w*|alte[nrs]?|falsch\w*"
    r"|immer noch|zeigt noch|noch die alte\w*|purgen|purgt)\b"
    # fr
    r"|\b(vide[rz]?|videz|purge[rz]?|rafra[iî]chi\w*|efface[rz]?|supprime[rz]?|actualise[rz]?|mett(re|ez) [àa] jour"
    r"|ancien\w*|vieux|vieille|toujours|encore|p[ée]rim[ée]e?s?)\b"
    # es
    r"|\b(borra\w*|limpia\w*|purga\w*|vac[ií]a\w*|actualiza\w*|refresca\w*|elimina\w*|viej\w*|antigu\w*"
    r"|todav[ií]a|sigue\w*|desactualizad\w*|cach[eé])\b"
    # nl
    r"|\b(leeg\w*|wis\w*|ververs\w*|verwijder\w*|vernieuw\w*|oude?|verouderd|nog steeds|toont nog|purgen)\b",
    re.IGNORECASE,
)
NEGATION = re.compile(
    r"\b(don'?t|do not|never|no need to|please don'?t)\s+(purge|clear|flush|touch|delete|wipe)\b"
    r"|\bnicht\s+(leeren|l[öo]schen|purgen|anfassen)\b|\bnichts\s+(leeren|l[öo]schen)\b"
    r"|\bne\s+(vide|purge|supprime|touche)z?\s+pas\b|\bsans\s+(vider|purger)\b"
    r"|\bne\s+pas\s+(vider|purger|effacer|supprimer|toucher)\b"
    r"|\bno\s+(borres|limpies|purgues|toques|vac[ií]es)\b|\bsin\s+(borrar|limpiar|purgar)\b"
    r"|\bno\s+(borrar|limpiar|purgar|vaciar|tocar)\b"
    r"|\bniet\s+(legen|leegmaken|wissen|purgen|verwijderen)\b",
    re.IGNORECASE,
)
# With a negation, these words say the person wants to know something (a check), not to call the purge off.
CURIOUS = re.compile(
    r"\b(curious|wondering|want(ed)? to know|just (looking|asking)|only (look|check)\w*)\b"
    r"|\b(neugierig|will (nur )?wissen)\b|\b(curieux|curieuse|savoir)\b|\b(curiosidad|saber)\b|\b(benieuwd|weten)\b",
    re.IGNORECASE,
)
# Calling a request off. Checked before anything else that could purge: a cancellation never purges.
CANCEL = re.compile(
    r"^\W*(wait\W+)?cancel\b|\bcancel (that|it|this|the (purge|request|last one))\b|\bnever ?mind\b|\bnvm\b"
    r"|\bforget (it|that|about it)\b|\bscratch that\b|\babort\b|\bdisregard (that|this|my last)\b"
    r"|\bignore (that|this|my last (message|request))\b|\bdon'?t do (it|that)\b|\bno (purge|need)( is)? needed\b"
    r"|\bactually,? no\b|\bcall (it|that) off\b|\bskip (it|that)\b|\b(that was|pasted|posted|sent) the wrong\b"
    r"|\bno,? wait\b|\bbelay (that|it)\b|\bhold off\b|\bdon'?t bother\b|\bleave\b.{0,60}\balone\b"
    # de
    r"|\babbrechen\b|\babbruch\b|\bvergiss (es|das)\b|\bdoch nicht\b|\blass (es|das) (sein|bleiben)\b"
    r"|\b(ist )?nicht (mehr )?n[öo]tig\b|\bstornier\w*|^\W*lass (es|das|mal)\b"
    # fr
    r"|\bannule[rz]?\b|\blaisse tomber\b|\boublie[rz]?\b|\bpas la peine\b|\bplus besoin\b"
    # es
    r"|\bcancela\w*|\bolv[ií]dalo\b|\bolvida (eso|lo que)\b|\bd[ée]jalo\b|\b(ya )?no hace falta\b"
    # nl
    r"|\bannuleer\w*|\blaat\b.{0,60}\bmaar (zitten|zo)\b|\blaat maar\b(?! zien)|\bhoeft niet\b"
    r"|\bvergeet (het|dat|maar)\b|\btoch (maar )?niet\b|\bniet (meer )?nodig\b"
    r"|\bafbreken\b",
    re.IGNORECASE,
)
# Plan only, purge nothing: "dry run: <url>", "test only, don't actually purge <url>", "what would you purge…".
DRY_RUN = re.compile(
    r"\bdry[- ]?run\b|\btest (only|run)\b|\bonly (a )?test\b|\bsimulat\w*|\bpreview\b|\bplan only\b"
    r"|\bdon'?t actually\b|\bwithout (actually )?(purging|clearing|sending|flushing|doing)\b"
    r"|\bdon'?t (send|run|execute) (anything|it)\b|\bshow me the plan\b"
    r"|\bwhat (would you|you'?d|you would) (purge|clear|flush|invalidate|send)\b"
    r"|\bwhich (caches|pages|layers) would you\b"
    r"|\bpretend\w*|\bno-?op\b|\brehears\w*"
    # "send nothing", "no real requests", "don't execute", "nichts senden", "sans rien envoyer"
    r"|\b(don'?t|do not|no|without|nothing|nichts|rien|nada|niets)\b.{0,15}"
    r"\b(send\w*|execut\w*|real|senden|schicken|envoy\w*|envoi|enviar|versturen|uitvoeren)\b"
    # de
    r"|\b(probe|trocken|test)lauf\w*|\bnur (testen|simulieren|planen|ein test)\b|\bsimulier\w*"
    r"|\bnicht wirklich (leeren|l[öo]schen|purgen|senden)\b|\bwas w[üu]rdest du\b.{0,60}\b(leeren|l[öo]schen|purgen)\b"
    # fr
    r"|\bsimul\w*|\b(test|essai)s? seulement\b|\bseulement (un )?(test|essai)\b|\bpour de vrai\b|\b[àa] blanc\b"
    r"|\btu (purgerais|viderais|effacerais|supprimerais)\b|\b(purgerais|viderais|effacerais)-tu\b"
    # es
    r"|\bsimulacro\b|\bsimula\w*|\b(s[oó]lo|solamente) (una )?prueba\b|\bprueba en seco\b"
    r"|\bno\b.{0,30}\bde verdad\b|\b(borrar|purgar|limpiar|vaciar)[ií]as\b"
    # nl
    r"|\bproef(draai\w*|run)\b|\btestrun\b|\balleen (testen|proberen|een test)\b"
    r"|\bniet echt (legen|leegmaken|wissen|purgen|verwijderen)\b"
    r"|\bwat (zou je|je zou)\b.{0,60}\b(legen|wissen|purgen)\b",
    re.IGNORECASE,
)
# Verbs of purging, in every form a question or hypothetical uses ("should I purge", "would purging", "si je vidais").
PURGE_VERB = re.compile(
    r"\b(purg|clear|flush|invalidat|bust|wip|evict|nuk|refresh|leer|l[öo]sch|vid|effac|borr|limpi|vac[ií]|leeg|leg"
    r"|wis|ververs|verwijder|cach|chach)\w*",
    re.IGNORECASE,
)
# A question or hypothetical about purging, whatever the sentence form: answered, never executed.
ASK_FRAME = re.compile(
    r"\bis it (safe|ok|okay|alright|fine|risky|dangerous|wise|a (good|bad) idea|worth)\b|\bis it worth\b"
    r"|\bwhat (would|will) happen\b|\bwhat happens (if|when)\b|\bwhat if\b|\bhypothetic\w*"
    r"|\bany (risk|danger|downside)\b|\brecommend\w*|\ballowed to\b|\bgoing to (break|cause|affect|hurt|slow)\b"
    r"|\b(could|will|might) (purging|clearing|flushing|a purge|it)\b.{0,40}\b(break|cause|affect|hurt|slow)\w*"
    r"|\bis (a|the) (purge|flush)\b"
    r"|\bwould (it|that|this)\b(?! be (possible|great|nice|awesome|cool|good))"
    r"|\bwould (purging|clearing|flushing|invalidating|a purge)\b|\bis (purging|clearing|flushing)\b"
    r"|\bif (i|we) (purged?|cleared?|flushed?|invalidated?|wiped?)\b|\bhow (bad|risky|dangerous)\b"
    # de
    r"|\bist es (sicher|ok|okay|in ordnung|riskant|gef[äa]hrlich|sinnvoll|eine gute idee|problematisch)\b"
    r"|\bwas (w[üu]rde|wird) passieren\b|\bwas passiert,? wenn\b|\blohnt es sich\b|\bhypothetisch\b"
    # fr
    r"|\best-(ce|il) (risqu[ée]|s[ûu]r|prudent|dangereux|grave|une bonne id[ée]e)\b|\bsans risque\b"
    r"|\bque se passerait-il\b|\bque se passe-t-il\b|\bqu'arriverait-il\b|\bhypoth[ée]tique\w*"
    r"|\bsi (je|j'|on|nous) (purgeais|vidais|effa[çc]ais|purgeait|vidait)\b"
    # es
    r"|\b(es|ser[ií]a|est[aá]) (seguro|peligroso|arriesgado|un problema|buena idea|mala idea|grave)\b"
    r"|\bqu[eé] pasar[ií]a\b|\bqu[eé] pasa si\b|\bhipot[eé]tic\w*"
    r"|\bsi (purgo|borro|limpio|vac[ií]o|purgara|borrara|limpiara|purgamos|borramos)\b"
    # nl
    r"|\bis het (veilig|ok|ok[eé]|okay|verstandig|riskant|gevaarlijk|erg|een goed idee)\b"
    r"|\bwat (zou|zal) er gebeuren\b|\bwat gebeurt er (als|wanneer)\b|\b(kan|zou) het kwaad\b",
    re.IGNORECASE,
)
# Purging as an action (not the noun "cache"): what a question about purging must mention.
PURGE_ACTION = re.compile(
    r"\b(purg|clear|flush|invalidat|bust|wip|evict|nuk|refresh|delet|remov|leer|l[öo]sch|vid|effac|supprim|borr|limpi"
    r"|vac[ií]|leeg|leg|wis|ververs|verwijder)\w*",
    re.IGNORECASE,
)
# Words that address the bot or ask nicely: "can you purge X?", "kannst du…?", "peux-tu…?", "¿puedes…?", "kun je…?"
# make a question a request. A question about purging without them is asked, not ordered.
REQUEST_MARKER = re.compile(
    r"\b(you|u|ya|your|please|pls|plz|thx|thanks)\b"
    r"|\b(du|ihr|bitte|kannst|k[öo]nntest|w[üu]rdest|magst)\b"
    r"|\b(can|could) we\b"
    r"|\b(tu|vous|stp|svp|merci)\b|-(tu|vous)\b|\bs'il (te|vous) pla[iî]t\b"
    r"|\b(puedes|podr[ií]as?|quieres|t[uú]|usted|por favor|porfa|gracias)\b"
    r"|\b(je|jij|jullie|kun|kunt|wil|graag|aub|alsjeblieft|alstublieft|bedankt|dank)\b",
    re.IGNORECASE,
)
# "should I…", "do I need to…", "can I…": a question when the message asks (a "?", or starts with it); "we should
# purge X" is a request.
ASK_MODAL = re.compile(
    r"\b(should|shall|may|must) (i|we)\b|\bcan i\b|\bdo (i|we) (need|have) to\b"
    r"|\bsoll(en|te|ten)? (ich|wir|man)\b|\bm[üu]ss(en|te)? (ich|wir|man)\b|\bdarf (ich|man)\b|\bkann (ich|man)\b"
    r"|\best-ce que (je|j'|on|nous) (peux|peut|pouvons|dois|doit|devons|devrais|devrait)\b"
    r"|\b(puis|dois|devrais)-je\b|\bfaut-il\b|\bfaudrait-il\b"
    r"|\bdeber[ií](a|amos)\b|\b(debo|debemos|puedo)\b|\b(tengo|tenemos) que\b"
    r"|\bmoet(en)? (ik|we|wij)\b|\bzou(den)? (ik|we|wij)\b|\b(mag|kan) (ik|we)\b",
    re.IGNORECASE,
)
# The question words that make "X is stale" a question rather than a report, in every language above.
QUESTION = re.compile(
    r"\?|^\W*(is|are|was|does|do|did|has|why|how|which|ist|sind|warum|wieso|est-ce|pourquoi|est[aá]n?|por ?qu[eé]"
    r"|zijn|waarom)\b",
    re.IGNORECASE,
)


class Understanding(BaseModel):
    """What was understood. ``selected`` holds placeholder numbers ([URL2] -> 2); empty means every URL."""

    intent: Intent
    reply: str = ""
    scope: Scope = "urls"
    selected: list[int] = []
    # rules_fallback: the model failed; choice: the person picked it from an offer (a button, a terminal prompt)
    understood_by: Literal["rules", "model", "rules_fallback", "choice"] = "rules"
    note: str = ""  # shown before the report: the model's short reply, or the fallback note
    token_usage: dict[str, Any] | None = None


class Understander(Protocol):
    """Anything that can understand a request: the rules, or a language model with the rules behind it."""

    def understand_request(self, message: str, sites: list[str]) -> Understanding: ...


def words_only(message: str) -> str:
    """The message without links and Slack tokens: the words we judge the intent from."""
    return LINK.sub(" ", SLACK_TOKEN.sub(" ", message)).strip()


def understand(message: str, has_urls: bool) -> Understanding:
    words = words_only(message)
    if not message.strip():
        return Understanding(intent=Intent.UNKNOWN, reply="Which page? Paste the URL(s) you want me to clear.")
    if HELP.search(words) and not has_urls:
        return Understanding(intent=Intent.HELP)
    held_back = holding_back(message, words, has_urls)
    if held_back is not None:
        return held_back
    if HISTORY.search(words):
        return Understanding(intent=Intent.HISTORY, reply=HISTORY_REPLY)
    if PURGE_ALL.search(words):
        return Understanding(intent=Intent.PURGE_ALL, scope="site")
    asked = QUESTION.search(SLACK_TOKEN.sub(" ", message))
    if (CHECK_VERB.search(words) and (has_urls or asked)) or (CHECK_QUESTION.search(words) and asked):
        return Understanding(intent=Intent.CHECK)
    if has_urls or PURGE.search(words):
        return Understanding(intent=Intent.PURGE)
    return Understanding(
        intent=Intent.UNKNOWN,
        reply="I can clear cached pages. Paste the URL(s) that show old content, or say 'help'.",
    )


def holding_back(message: str, words: str, has_urls: bool) -> Understanding | None:
    """The message calls a purge off, asks for a dry run, asks *about* purging, or says not to purge: what to do
    instead (cancel, dry run, ask, check). None when nothing holds the request back.

    Dry runs come first ("test only, don't actually purge" is a dry run, not a cancellation), then cancellations,
    then questions, then plain negations. Each of these purges nothing, so a wrong pick among them is safe."""
    everything = "site" if PURGE_ALL.search(words) else "urls"
    if DRY_RUN.search(words):
        return Understanding(intent=Intent.DRY_RUN, scope=everything)
    if CANCEL.search(words):
        return Understanding(intent=Intent.CANCEL, reply=CANCEL_REPLY)
    if NEGATION.search(words):
        if has_urls and (CHECK_VERB.search(words) or CURIOUS.search(words)):
            return Understanding(intent=Intent.CHECK, reply="You asked me not to purge, so I only looked.")
        if has_urls:
            return Understanding(intent=Intent.CANCEL, reply=CANCEL_REPLY)
        return Understanding(intent=Intent.UNKNOWN, reply="Understood, I won't purge anything.")
    asked = QUESTION.search(SLACK_TOKEN.sub(" ", message)) or ASK_MODAL.match(words.lstrip(" \t\n,.!¡¿-"))
    if (ASK_FRAME.search(words) or (ASK_MODAL.search(words) and asked)) and (PURGE_VERB.search(words) or has_urls):
        return Understanding(intent=Intent.ASK, scope=everything)
    if question_about_purging(words):
        return Understanding(intent=Intent.ASK, scope=everything)
    return None


def question_about_purging(words: str) -> bool:
    """Structural, not a keyword list: a question ("?") that mentions purging, is not about the state of a page
    or the history, and neither addresses the bot nor says please. "is X safe to purge at peak time?", "ça risque
    quoi si on vide X ?" are questions; "can you purge X?", "kun je X legen?" are requests."""
    if "?" not in words or not PURGE_ACTION.search(words) or REQUEST_MARKER.search(words):
        return False
    return not (CHECK_QUESTION.search(words) or CHECK_VERB.search(words) or HISTORY.search(words))


CANCEL_REPLY = "Cancelled: I did not purge anything for this message."
PLAN_ONLY = (Intent.ASK, Intent.DRY_RUN)  # planned and shown, never executed
PURGING = (Intent.PURGE, Intent.PURGE_ALL)


def guard(understood: Understanding, message: str) -> Understanding:
    """The rules' last word on any understanding (a language model's included): when the words hold a purge back
    (a question, a dry run, a cancellation, "don't purge"), a purge is never what comes out. Only ever narrows:
    an answer that does not purge is returned as it is."""
    if understood.intent not in PURGING:
        return understood
    held_back = holding_back(message, words_only(message), bool(mask_urls(message).urls))
    if held_back is None:
        return understood
    # the model's own sentence would promise a purge that is not coming: the reply explains instead
    return held_back.model_copy(update={"understood_by": understood.understood_by, "selected": understood.selected,
                                        "token_usage": understood.token_usage})


# Said only where no audit trail is attached (the graph run on its own, e.g. under `langgraph dev`): with an
# Agent, the report node answers history questions from the audit trail instead.
HISTORY_REPLY = ("The purge history is not connected here (ask me in Slack, or run `cachebot history`); "
                 "I can purge or check pages now.")


class RuleUnderstander:
    """The embedded default: keyword rules, no model, no network."""

    name = "rules"

    def understand_request(self, message: str, sites: list[str]) -> Understanding:
        return understand(message, has_urls=bool(mask_urls(message).urls))


# --------------------------------------------------------------------------------------------- placeholders

MAX_LISTED_URLS = 20  # above this, the whole list becomes one "[N URLs]" marker
MAX_MASKED_CHARS = 2000  # the words around the URLs, capped so the prompt stays flat however long the paste

_SLACK_ANGLE = re.compile(r"<[^<>]*>")
_NON_SPACE = re.compile(r"\S+")
_PLACEHOLDER = re.compile(r"\[URL(\d+)\]")
_MARKER_LINE = re.compile(r"^[\s\W]*(\[(?:URL\d+|\d+ URLs)\])?[\s\W]*$")


@dataclass(frozen=True)
class MaskedMessage:
    text: str  # the message with every URL replaced by [URLn] (or one "[N URLs]" marker for long lists)
    urls: list[str]  # distinct URL candidates as written (agent.urls.extract_candidates), [URLn] is urls[n-1]
    listed: bool  # True when each URL has its own placeholder (a selection can refer to them)


def mask_urls(message: str, max_listed: int = MAX_LISTED_URLS) -> MaskedMessage:
    """Replace every URL in ``message`` by a placeholder; the URLs themselves come from ``agent.urls``.

    Each Slack link (``<url|label>``) and each whitespace-separated word that contains a URL candidate is
    replaced as a whole, so labels and punctuation glued to a link are not shown either. The same URL gets
    the same placeholder. With more than ``max_listed`` URLs, one ``[N URLs]`` marker stands for all of them.
    """
    urls: list[str] = []
    index: dict[str, int] = {}

    def placeholders(piece: str) -> str | None:
        found = extract_candidates(piece)
        if not found:
            return None
        names = []
        for url in found:
            if url not in index:
                urls.append(url)
                index[url] = len(urls)
            names.append(f"[URL{index[url]}]")
        return " ".join(dict.fromkeys(names))

    def angle(match: re.Match[str]) -> str:
        replaced = placeholders(match.group(0))
        return f" {replaced} " if replaced else match.group(0)

    def word(match: re.Match[str]) -> str:
        text = match.group(0)
        if _PLACEHOLDER.fullmatch(text) or text.startswith("<") and text.endswith(">"):
            return text
        return placeholders(text) or text

    text = _SLACK_ANGLE.sub(angle, message or "")
    text = _NON_SPACE.sub(word, text)
    if len(urls) <= max_listed:
        return MaskedMessage(text=_tidy(text), urls=urls, listed=True)
    marker = f"[{len(urls)} URLs]"
    text = _PLACEHOLDER.sub("\x00", text)
    text = re.sub(r"\x00(?:[\s,;•*\-·]*\x00)*", marker, text, count=1).replace("\x00", "")
    lines = [line for line in text.splitlines() if not _MARKER_LINE.match(line) or marker in line]
    return MaskedMessage(text=_tidy("\n".join(lines)), urls=urls, listed=False)


def _tidy(text: str) -> str:
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"(\]) ([,.;:!?])", r"\1\2", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n\s*\n+", "\n", text).strip()
    if len(text) > MAX_MASKED_CHARS:
        half = MAX_MASKED_CHARS // 2
        text = text[:half] + " … " + text[-half:]
    return text
