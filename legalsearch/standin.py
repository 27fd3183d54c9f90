"""A local stand-in for the BOE open-data API, for tests and benchmarks (the real one cannot be reached here).

It answers as `../shared/boe-api/README.md` describes the API, in the shapes of the real captures in
`../shared/boe-api/samples/`:

* `GET /datosabiertos/api/legislacion-consolidada?from&to&offset&limit&query` — JSON pages of at most 10,000
  items (`limit=-1` too), no total count, `"data": ""` when empty; default order `fecha_actualizacion`
  descending with ties in a different order on every call (the real API's paging is not stable); a `query`
  with `"sort": [{"identificador": "asc"}]` orders by id;
* `GET …/legislacion-consolidada/id/{id}` — XML: `metadatos`, `analisis`, `texto` (bloques with versions);
  404 for unknown or not consolidated norms, 400 for a malformed id;
* `GET /datosabiertos/api/boe/sumario/{YYYYMMDD}` — JSON sumario (diario → seccion → departamento →
  epigrafe → item), 404 on days without a BOE;
* `GET /diario_boe/xml.php?id={id}` — the diario document XML (`<documento>` with metadatos, texto);
* a missing, `*/*` or unsupported `Accept` header → 400 `No soportado ningún mime type de la cabecera Accept.`

Faults on request (`Faults`): 5xx for the first n requests to a path, dropped connections, slow answers.
Every request is logged in `hits` (path, query, headers).
"""

from __future__ import annotations

import datetime
import http.server
import json
import random
import re
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

ID = re.compile(r"^[A-Z]{2,5}-[A-Za-z]-\d{4}-\d+$")
NOT_ACCEPTED = "No soportado ningún mime type de la cabecera Accept."
NOT_FOUND = "La información solicitada no existe"
BAD_ID = "Identificador no válido o parámetros incorrectos"
PAGE_CAP = 10_000
RANGOS = {"1300": "Ley", "1290": "Ley Orgánica", "1340": "Real Decreto", "1350": "Orden", "1370": "Resolución"}


@dataclass
class Norm:
    """One norm of the stand-in's catalogue and its consolidated text."""

    boe_id: str
    titulo: str
    fecha_actualizacion: str  # YYYYMMDDTHHMMSSZ
    rango: str = "1300"
    ambito: str = "1"  # 1 Estatal, 2 Autonómico
    departamento: tuple[str, str] = ("7723", "Jefatura del Estado")
    fecha_publicacion: str = "20200101"
    vigencia_agotada: str = "N"
    estatus_derogacion: str = "N"
    estatus_anulacion: str = "N"
    fecha_derogacion: str | None = None
    consolidated: bool = True  # False: the per-norm endpoints answer 404
    articles: list[tuple[str, str]] = field(default_factory=list)  # (title, text)
    materias: list[tuple[str, str]] = field(default_factory=list)  # (codigo, texto)
    posteriores: list[tuple[str, str, str]] = field(default_factory=list)  # (id_norma, relacion codigo, texto)

    def item(self) -> dict:
        """The catalogue item, fields in the order of the real capture (`bquant_boe-lc-normas.json`)."""
        item = {
            "fecha_actualizacion": self.fecha_actualizacion,
            "identificador": self.boe_id,
            "ambito": {"codigo": self.ambito, "texto": "Estatal" if self.ambito == "1" else "Autonómico"},
            "departamento": {"codigo": self.departamento[0], "texto": self.departamento[1]},
            "rango": {"codigo": self.rango, "texto": RANGOS.get(self.rango, "Ley")},
            "fecha_disposicion": self.fecha_publicacion,
            "numero_oficial": self.boe_id.rsplit("-", 1)[1] + "/" + self.boe_id.split("-")[2],
            "titulo": self.titulo,
            "diario": "Boletín Oficial del Estado",
            "fecha_publicacion": self.fecha_publicacion,
            "diario_numero": "1",
            "fecha_vigencia": self.fecha_publicacion,
            "vigencia_agotada": self.vigencia_agotada,
            "estado_consolidacion": {"codigo": "3", "texto": "Finalizado"},
            "url_eli": f"https://www.boe.es/eli/es/l/{self.boe_id}",
            "url_html_consolidada": f"https://www.boe.es/buscar/act.php?id={self.boe_id}",
        }
        return item

    def metadatos(self, parent: ET.Element) -> ET.Element:
        meta = ET.SubElement(parent, "metadatos")
        item = self.item()
        for key, value in item.items():
            if key == "vigencia_agotada":  # the per-norm metadatos carry the two status flags before it
                for flag, flag_value in (("estatus_derogacion", self.estatus_derogacion),
                                         ("estatus_anulacion", self.estatus_anulacion)):  # fmt: skip
                    ET.SubElement(meta, flag).text = flag_value
                if self.fecha_derogacion:
                    ET.SubElement(meta, "fecha_derogacion").text = self.fecha_derogacion
            if isinstance(value, dict):
                ET.SubElement(meta, key, codigo=value["codigo"]).text = value["texto"]
            else:
                ET.SubElement(meta, key).text = value
        return meta

    def analisis(self, parent: ET.Element) -> None:
        if not self.materias and not self.posteriores:
            return
        analisis = ET.SubElement(parent, "analisis")
        if self.materias:
            materias = ET.SubElement(analisis, "materias")
            for codigo, texto in self.materias:
                ET.SubElement(materias, "materia", codigo=codigo).text = texto
        if self.posteriores:
            referencias = ET.SubElement(analisis, "referencias")
            posteriores = ET.SubElement(referencias, "posteriores")
            for id_norma, relacion, texto in self.posteriores:
                posterior = ET.SubElement(posteriores, "posterior", referencia=id_norma)
                ET.SubElement(posterior, "id_norma").text = id_norma
                ET.SubElement(posterior, "relacion", codigo=relacion).text = "SE MODIFICA"
                ET.SubElement(posterior, "texto").text = texto

    def texto(self, parent: ET.Element) -> None:
        texto = ET.SubElement(parent, "texto")
        day = self.fecha_publicacion
        for number, (title, text) in enumerate(self.articles, 1):
            bloque = ET.SubElement(texto, "bloque", id=f"a{number}", tipo="precepto", titulo=f"Artículo {number}")
            version = ET.SubElement(bloque, "version", id_norma=self.boe_id, fecha_publicacion=day, fecha_vigencia=day)
            ET.SubElement(version, "p", {"class": "articulo"}).text = f"Artículo {number}. {title}."
            ET.SubElement(version, "p", {"class": "parrafo"}).text = text

    def document(self) -> bytes:
        """The `/id/{id}` answer: metadatos, analisis, texto."""
        response = ET.Element("response")
        status = ET.SubElement(response, "status")
        ET.SubElement(status, "code").text = "200"
        ET.SubElement(status, "text").text = "ok"
        data = ET.SubElement(response, "data")
        self.metadatos(data)
        self.analisis(data)
        self.texto(data)
        ET.indent(response, "  ")
        return ET.tostring(response, encoding="utf-8", xml_declaration=True)

    def diario(self) -> bytes:
        """The diario document (`/diario_boe/xml.php?id=`): the text as published, not consolidated."""
        root = ET.Element("documento", fecha_actualizacion=self.fecha_publicacion + "120000")
        meta = ET.SubElement(root, "metadatos")
        for key, value in (("identificador", self.boe_id), ("titulo", self.titulo),
                           ("rango", RANGOS.get(self.rango, "Ley")), ("fecha_publicacion", self.fecha_publicacion),
                           ("seccion", "1"), ("fecha_vigencia", self.fecha_publicacion),
                           ("estatus_derogacion", "N")):  # fmt: skip
            ET.SubElement(meta, key).text = value
        texto = ET.SubElement(root, "texto")
        for number, (title, text) in enumerate(self.articles, 1):
            ET.SubElement(texto, "p", {"class": "articulo"}).text = f"Artículo {number}. {title}."
            ET.SubElement(texto, "p", {"class": "parrafo"}).text = text
        ET.indent(root, "  ")
        return ET.tostring(root, encoding="utf-8", xml_declaration=True)


@dataclass
class Faults:
    """Faults to inject: 5xx for the first n requests to a path (`errors[path] = n`), dropped connections
    (`drops[path] = n`), slow answers (`slow[path] = n`, `slow_seconds` each), a delay on every answer."""

    errors: dict[str, int] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)
    slow: dict[str, int] = field(default_factory=dict)  # the first n answers to a path wait `slow_seconds`
    slow_seconds: float = 2.0
    delay: float = 0.0
    status: int = 503


class StandIn:
    """The server: `url` is the API root (…/datosabiertos/api); `norms`, `diario` (day → norms published that
    day, section I) and `faults` may change while it runs."""

    def __init__(self) -> None:
        self.norms: dict[str, Norm] = {}
        self.diario: dict[str, list[Norm]] = {}
        self.faults = Faults()
        self.hits: list[tuple[str, dict, dict]] = []  # (path, query, headers)
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/datosabiertos/api"

    def start(self) -> StandIn:
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                standin._answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def paths(self, prefix: str = "") -> list[str]:
        """The paths requested so far that start with `prefix` (after the API root)."""
        return [p for p, _, _ in self.hits if p.startswith("/datosabiertos/api" + prefix) or p.startswith(prefix)]

    # --- answering ------------------------------------------------------------------------------------------
    def _answer(self, request: http.server.BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(request.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        with self._lock:
            self.hits.append((parsed.path, query, dict(request.headers)))
            drop = self.faults.drops.get(parsed.path, 0)
            if drop:
                self.faults.drops[parsed.path] = drop - 1
            error = self.faults.errors.get(parsed.path, 0)
            if error:
                self.faults.errors[parsed.path] = error - 1
            slow = self.faults.slow.get(parsed.path, 0)
            if slow:
                self.faults.slow[parsed.path] = slow - 1
        if self.faults.delay or slow:
            time.sleep(self.faults.delay + (self.faults.slow_seconds if slow else 0))
        if drop:
            request.close_connection = True
            request.connection.close()
            return
        if error:
            return self._send(request, self.faults.status, _status_xml(self.faults.status, "Service Unavailable"))
        accept = request.headers.get("Accept", "")
        kind = "json" if "application/json" in accept else ("xml" if "application/xml" in accept else None)
        if kind is None:
            return self._send(request, 400, _status_xml(400, NOT_ACCEPTED))
        path = parsed.path
        if path.startswith("/diario_boe/xml.php"):
            return self._diario_document(request, query.get("id", ""))
        if path == "/datosabiertos/api/legislacion-consolidada":
            return self._catalogue(request, query, kind)
        match = re.fullmatch(r"/datosabiertos/api/legislacion-consolidada/id/([^/]+)", path)
        if match:
            return self._norm(request, match[1], kind)
        match = re.fullmatch(r"/datosabiertos/api/boe/sumario/(\d{8})", path)
        if match:
            return self._sumario(request, match[1], kind)
        return self._send(request, 404, _status_xml(404, NOT_FOUND))

    def _send(self, request, status: int, body: bytes, content_type: str = "application/xml") -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def _catalogue(self, request, query: dict, kind: str) -> None:
        if kind != "json":
            return self._send(request, 400, _status_xml(400, NOT_ACCEPTED))
        try:
            offset = int(query.get("offset", 0))
            limit = int(query.get("limit", 50))
            search = json.loads(query["query"]) if "query" in query else {}
        except (ValueError, json.JSONDecodeError):
            return self._send(request, 500, _status_xml(500, "Search error"))
        limit = PAGE_CAP if limit < 0 or limit > PAGE_CAP else limit
        low, high = query.get("from", "00000000"), query.get("to", "99999999")
        with self._lock:
            items = [n for n in self.norms.values() if low <= n.fecha_actualizacion[:8] <= high]
        if any("identificador" in s for s in search.get("sort", [])):
            items.sort(key=lambda n: n.boe_id)
        else:  # newest first; ties in a new order on every call, as the real paging is not stable
            shuffled = random.sample(items, len(items))
            items = sorted(shuffled, key=lambda n: n.fecha_actualizacion, reverse=True)
        page = [n.item() for n in items[offset : offset + limit]]
        body = {"status": {"code": "200", "text": "ok"}, "data": page or ""}
        self._send(request, 200, json.dumps(body).encode(), "application/json")

    def _norm(self, request, boe_id: str, kind: str) -> None:
        if not ID.match(boe_id):
            return self._send(request, 400, _status_xml(400, BAD_ID))
        if kind != "xml":
            return self._send(request, 400, _status_xml(400, NOT_ACCEPTED))
        norm = self.norms.get(boe_id)
        if norm is None or not norm.consolidated:
            return self._send(request, 404, _status_xml(404, NOT_FOUND))
        self._send(request, 200, norm.document())

    def _sumario(self, request, day: str, kind: str) -> None:
        published = self.diario.get(day)
        if published is None:
            return self._send(request, 404, _status_xml(404, NOT_FOUND))
        items = [
            {"identificador": n.boe_id, "control": "2026/1", "titulo": n.titulo,
             "url_pdf": {"szBytes": "1000", "szKBytes": "1", "pagina_inicial": "1", "pagina_final": "2",
                         "texto": f"https://www.boe.es/boe/dias/{day}/pdfs/{n.boe_id}.pdf"},
             "url_html": f"https://www.boe.es/diario_boe/txt.php?id={n.boe_id}",
             "url_xml": f"https://www.boe.es/diario_boe/xml.php?id={n.boe_id}"}
            for n in published
        ]  # fmt: skip
        leyes = {"nombre": "Leyes", "item": items[0] if len(items) == 1 else items}  # one item: an object
        jefatura = {"codigo": "7723", "nombre": "JEFATURA DEL ESTADO", "epigrafe": leyes}
        section_one = {"codigo": "1", "nombre": "I. Disposiciones generales", "departamento": jefatura}
        resolution = {"identificador": f"BOE-A-{day[:4]}-999{day[4:]}", "titulo": "Resolución"}
        ayudas = {"nombre": "Ayudas", "item": resolution}
        other = {"codigo": "3", "nombre": "III. Otras disposiciones",
                 "departamento": {"codigo": "9999", "nombre": "MINISTERIO", "epigrafe": ayudas}}  # fmt: skip
        body = {"status": {"code": "200", "text": "ok"},
                "data": {"sumario": {"metadatos": {"publicacion": "BOE", "fecha_publicacion": day},
                                     "diario": [{"numero": "1", "sumario_diario": {"identificador": f"BOE-S-{day}"},
                                                 "seccion": [section_one, other]}]}}}  # fmt: skip
        if kind == "json":
            return self._send(request, 200, json.dumps(body).encode(), "application/json")
        return self._send(request, 400, _status_xml(400, NOT_ACCEPTED))

    def _diario_document(self, request, boe_id: str) -> None:
        for published in self.diario.values():
            for norm in published:
                if norm.boe_id == boe_id:
                    return self._send(request, 200, norm.diario())
        self._send(request, 200, b'<?xml version="1.0"?><error><descripcion>No existe</descripcion></error>')


def _status_xml(code: int, text: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<response><status><code>{code}</code><text>{text}</text></status>'
        "<data/></response>"
    ).encode()


def synthetic_norms(count: int, seed: int = 0, articles: int = 2, start: str = "2024-01-01") -> list[Norm]:
    """`count` small norms with distinct ids, titles, texts and update times (a catalogue for tests)."""
    rng = random.Random(seed)
    words = ("plazo", "recurso", "contrato", "vivienda", "trabajador", "salario", "impuesto", "sociedad",
             "administración", "notificación", "menor", "herencia", "arrendamiento", "sanción", "licencia")  # fmt: skip
    first = datetime.date.fromisoformat(start)
    norms = []
    for i in range(count):
        day = first + datetime.timedelta(days=i % 700)
        topic = words[i % len(words)]
        texts = [
            (f"{topic.capitalize()} {j}", f"El {topic} se regirá por lo dispuesto en esta norma número {i}, "
             f"apartado {j}, y por {rng.choice(words)} y {rng.choice(words)}.")
            for j in range(1, articles + 1)
        ]  # fmt: skip
        norm = Norm(
            boe_id=f"BOE-A-{day.year}-{10000 + i}", titulo=f"Ley {i}/{day.year}, de {topic}.",
            fecha_actualizacion=f"{day.strftime('%Y%m%d')}T{i % 24:02d}0000Z",
            rango=rng.choice(list(RANGOS)), ambito="1" if i % 5 else "2",
            fecha_publicacion=day.strftime("%Y%m%d"), articles=texts, materias=[("1234", topic.capitalize())],
        )  # fmt: skip
        norms.append(norm)
    return norms
