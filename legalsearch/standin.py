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

* `GET …/legislacion-consolidada/id/{id}/metadatos` — the metadatos alone (XML).

Faults on request (`Faults`), each one a bad day of a real API: 5xx or 429 (with `Retry-After`) for the first n
requests to a path, an outage of the next n requests, dropped connections, slow answers; catalogue answers that
are empty (`"data": ""`, `[]`) or carry an error status inside an HTTP 200; pages shorter than asked, the sort
ignored (ties reshuffled on every call), the catalogue changing between pages, items missing fields; empty texts
(`<texto/>`), per-norm endpoints lagging behind the catalogue (404 for a listed norm), redirects. Every request is
logged in `hits` (path, query, headers).

Run it as a program to try `legalsearch sync` offline (`python -m legalsearch.standin --help`): it serves the
real API XML files of a folder (`--catalogue`) and/or synthetic norms, with faults (`--fault`).
"""

from __future__ import annotations

import argparse
import datetime
import http.server
import json
import random
import re
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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
    raw: bytes | None = None  # a real `/id/{id}` answer, served as it is (its fecha_actualizacion kept current)
    listed: dict | None = None  # the catalogue item of a real norm (from its metadatos)
    diario_raw: bytes | None = None  # a real diario document

    @classmethod
    def from_document(cls, raw: bytes, diario_raw: bytes | None = None) -> Norm:
        """A norm from a real `/id/{id}` answer (`<response><data><metadatos>…<texto>`)."""
        meta = ET.fromstring(raw).find("data/metadatos")
        item: dict = {}
        for child in meta:
            if child.tag in ("estatus_derogacion", "estatus_anulacion", "fecha_derogacion", "fecha_anulacion"):
                continue  # on the per-norm metadatos only, not in catalogue items
            text = (child.text or "").strip()
            item[child.tag] = {"codigo": child.get("codigo"), "texto": text} if child.get("codigo") else text

        def code(tag: str, default: str) -> str:
            node = meta.find(tag)
            return node.get("codigo", default) if node is not None else default

        return cls(
            boe_id=meta.findtext("identificador", "").strip(), titulo=meta.findtext("titulo", "").strip(),
            fecha_actualizacion=meta.findtext("fecha_actualizacion", "").strip(), rango=code("rango", "1300"),
            ambito=code("ambito", "1"), fecha_publicacion=meta.findtext("fecha_publicacion", "").strip(),
            vigencia_agotada=meta.findtext("vigencia_agotada", "N").strip(),
            estatus_derogacion=meta.findtext("estatus_derogacion", "N").strip(),
            estatus_anulacion=meta.findtext("estatus_anulacion", "N").strip(), raw=raw, listed=item,
            diario_raw=diario_raw,
        )  # fmt: skip

    def item(self) -> dict:
        """The catalogue item, fields in the order of the real capture (`bquant_boe-lc-normas.json`)."""
        if self.listed is not None:
            return {**self.listed, "fecha_actualizacion": self.fecha_actualizacion}
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

    def document(self, empty_text: bool = False) -> bytes:
        """The `/id/{id}` answer: metadatos, analisis, texto (empty: `<texto/>`, a fault)."""
        if self.raw is not None:
            body = re.sub(rb"<fecha_actualizacion>[^<]*</fecha_actualizacion>",
                          f"<fecha_actualizacion>{self.fecha_actualizacion}</fecha_actualizacion>".encode(),
                          self.raw, count=1)  # fmt: skip
            return re.sub(rb"<texto>.*</texto>", b"<texto/>", body, flags=re.S) if empty_text else body
        response = ET.Element("response")
        status = ET.SubElement(response, "status")
        ET.SubElement(status, "code").text = "200"
        ET.SubElement(status, "text").text = "ok"
        data = ET.SubElement(response, "data")
        self.metadatos(data)
        self.analisis(data)
        if empty_text:
            ET.SubElement(data, "texto")
        else:
            self.texto(data)
        ET.indent(response, "  ")
        return ET.tostring(response, encoding="utf-8", xml_declaration=True)

    def metadatos_answer(self) -> bytes:
        """The `/id/{id}/metadatos` answer."""
        if self.raw is not None:
            found = re.search(rb"<metadatos>.*</metadatos>", self.document(), flags=re.S)
            inner = found[0] if found else b"<metadatos/>"
            return (
                b'<?xml version="1.0" encoding="utf-8"?>\n<response><status><code>200</code><text>ok</text>'
                b"</status><data>" + inner + b"</data></response>"
            )
        response = ET.Element("response")
        status = ET.SubElement(response, "status")
        ET.SubElement(status, "code").text = "200"
        ET.SubElement(status, "text").text = "ok"
        self.metadatos(ET.SubElement(response, "data"))
        return ET.tostring(response, encoding="utf-8", xml_declaration=True)

    def diario(self) -> bytes:
        """The diario document (`/diario_boe/xml.php?id=`): the text as published, not consolidated."""
        if self.diario_raw is not None:
            return self.diario_raw
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


LISTING_FAULTS = ("empty", "blank", "error", "garbage", "ok")


@dataclass
class Faults:
    """Faults to inject (each may change while the server runs):

    * `errors[path] = n`: the first n requests to `path` answer `status` (503; 429 …), with `retry_after` as the
      `Retry-After` header when set (seconds, or an HTTP-date); `outage = n`: the next n requests, any path, too;
    * `drops[path] = n`: dropped connections; `slow[path] = n`: answers `slow_seconds` late; `delay` on every one;
    * `listing`: how the next catalogue answers go wrong, one entry each: `empty` (`"data": ""`), `blank`
      (`"data": []`), `error` (status 500 inside an HTTP 200), `garbage` (not JSON), `ok`;
    * `page_cap`: the most items one page holds (short pages); `ignore_sort`: the sort asked is ignored (default
      order, ties reshuffled on every call); `missing[field] = share`: that share of items lack the field;
      `after_page`: changes to the catalogue made after each catalogue answer, one a page (changes between pages);
    * `empty_texts[id] = n`, `lagging[id] = n`: the next n answers for that norm carry an empty `<texto/>`, or
      404 (an endpoint lagging behind the catalogue that lists the norm); `redirects[path] = url`: a 302.
    """

    errors: dict[str, int] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)
    slow: dict[str, int] = field(default_factory=dict)  # the first n answers to a path wait `slow_seconds`
    slow_seconds: float = 2.0
    delay: float = 0.0
    status: int = 503
    retry_after: str | None = None
    outage: int = 0
    listing: list[str] = field(default_factory=list)
    page_cap: int = PAGE_CAP
    ignore_sort: bool = False
    missing: dict[str, float] = field(default_factory=dict)
    after_page: list[Callable[[StandIn], None]] = field(default_factory=list)
    empty_texts: dict[str, int] = field(default_factory=dict)
    lagging: dict[str, int] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)

    def clear(self) -> None:
        """The API answers cleanly from now on."""
        self.__init__()


def _take(counts: dict[str, int], key: str) -> bool:
    """Use up one of `counts[key]`; whether there was one."""
    left = counts.get(key, 0)
    if left:
        counts[key] = left - 1
    return bool(left)


class StandIn:
    """The server: `url` is the API root (…/datosabiertos/api); `norms`, `diario` (day → norms published that
    day, section I) and `faults` may change while it runs."""

    def __init__(self, port: int = 0, seed: int = 0) -> None:
        self.norms: dict[str, Norm] = {}
        self.diario: dict[str, list[Norm]] = {}
        self.faults = Faults()
        self.hits: list[tuple[str, dict, dict]] = []  # (path, query, headers)
        self.port = port
        self.rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/datosabiertos/api"

    def add(self, norms: list[Norm]) -> StandIn:
        for norm in norms:
            self.norms[norm.boe_id] = norm
        return self

    def start(self) -> StandIn:
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                standin._answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
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
        faults = self.faults
        with self._lock:
            self.hits.append((parsed.path, query, dict(request.headers)))
            drop = _take(faults.drops, parsed.path)
            error = _take(faults.errors, parsed.path)
            if faults.outage:
                faults.outage -= 1
                error = True
            slow = _take(faults.slow, parsed.path)
            redirect = faults.redirects.get(parsed.path)
        if faults.delay or slow:
            time.sleep(faults.delay + (faults.slow_seconds if slow else 0))
        if drop:
            request.close_connection = True
            request.connection.close()
            return
        if error:
            reason = "Too Many Requests" if faults.status == 429 else "Service Unavailable"
            headers = {"Retry-After": faults.retry_after} if faults.retry_after else {}
            return self._send(request, faults.status, _status_xml(faults.status, reason), headers=headers)
        if redirect:
            return self._send(request, 302, b"", headers={"Location": redirect})
        accept = request.headers.get("Accept", "")
        kind = "json" if "application/json" in accept else ("xml" if "application/xml" in accept else None)
        if kind is None:
            return self._send(request, 400, _status_xml(400, NOT_ACCEPTED))
        path = parsed.path
        if path.startswith("/diario_boe/xml.php"):
            return self._diario_document(request, query.get("id", ""))
        if path == "/datosabiertos/api/legislacion-consolidada":
            return self._catalogue(request, query, kind)
        match = re.fullmatch(r"/datosabiertos/api/legislacion-consolidada/id/([^/]+)(/metadatos)?", path)
        if match:
            return self._norm(request, match[1], kind, only_metadatos=bool(match[2]))
        match = re.fullmatch(r"/datosabiertos/api/boe/sumario/(\d{8})", path)
        if match:
            return self._sumario(request, match[1], kind)
        return self._send(request, 404, _status_xml(404, NOT_FOUND))

    def _send(self, request, status: int, body: bytes, content_type: str = "application/xml", headers=None) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            request.send_header(name, value)
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
        faults = self.faults
        limit = PAGE_CAP if limit < 0 or limit > PAGE_CAP else limit
        limit = min(limit, faults.page_cap)
        low, high = query.get("from", "00000000"), query.get("to", "99999999")
        with self._lock:
            fault = faults.listing.pop(0) if faults.listing else "ok"
            items = [n for n in self.norms.values() if low <= n.fecha_actualizacion[:8] <= high]
            if any("identificador" in s for s in search.get("sort", [])) and not faults.ignore_sort:
                items.sort(key=lambda n: n.boe_id)
            else:  # newest first; ties in a new order on every call, as the real paging is not stable
                shuffled = self.rng.sample(items, len(items))
                items = sorted(shuffled, key=lambda n: n.fecha_actualizacion, reverse=True)
            page = [self._without_fields(n.item()) for n in items[offset : offset + limit]]
            changes = faults.after_page.pop(0) if faults.after_page else None
        if changes is not None:
            changes(self)
        if fault == "garbage":
            return self._send(request, 200, b"<html>Mantenimiento</html>", "text/html")
        status = {"code": "500", "text": "Search error"} if fault == "error" else {"code": "200", "text": "ok"}
        data = "" if fault in ("empty", "error") else ([] if fault == "blank" else (page or ""))
        self._send(request, 200, json.dumps({"status": status, "data": data}).encode(), "application/json")

    def _without_fields(self, item: dict) -> dict:
        for name, share in self.faults.missing.items():
            if self.rng.random() < share:
                item.pop(name, None)
        return item

    def _norm(self, request, boe_id: str, kind: str, only_metadatos: bool = False) -> None:
        if not ID.match(boe_id):
            return self._send(request, 400, _status_xml(400, BAD_ID))
        if kind != "xml":
            return self._send(request, 400, _status_xml(400, NOT_ACCEPTED))
        with self._lock:
            norm = self.norms.get(boe_id)
            lagging = norm is not None and _take(self.faults.lagging, boe_id)
            empty = norm is not None and not only_metadatos and _take(self.faults.empty_texts, boe_id)
        if norm is None or not norm.consolidated or lagging:
            return self._send(request, 404, _status_xml(404, NOT_FOUND))
        self._send(request, 200, norm.metadatos_answer() if only_metadatos else norm.document(empty_text=empty))

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
        departamentos = []
        for name in dict.fromkeys(n.departamento[1] for n in published):  # one item: an object, as the BOE's
            mine = [i for i, n in zip(items, published, strict=True) if n.departamento[1] == name]
            leyes = {"nombre": "Leyes", "item": mine[0] if len(mine) == 1 else mine}
            departamentos.append({"codigo": "7723", "nombre": name.upper(), "epigrafe": leyes})
        section_one = {"codigo": "1", "nombre": "I. Disposiciones generales",
                       "departamento": departamentos[0] if len(departamentos) == 1 else departamentos}  # fmt: skip
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


# --- serving a folder of real files, from the command line -----------------------------------------------------


@dataclass
class Folder:
    """What `load_folder` found: norms to serve, and files it could not use (path → why)."""

    norms: list[Norm] = field(default_factory=list)
    diario: list[Norm] = field(default_factory=list)  # diario documents only (no consolidated text)
    skipped: dict[str, str] = field(default_factory=dict)


def load_folder(folder: Path) -> Folder:
    """Real API XML files of `folder` as a catalogue: `/id/{id}` answers (metadatos and texto) are served as they
    are; an `/id/{id}/metadatos` (or diario `<documento>`) answer and an `/id/{id}/texto` answer of the same norm
    are joined into one; diario documents are served at `/diario_boe/xml.php` and listed in the sumario of their
    day. Other files are skipped, each with why."""
    found = Folder()
    metadatos: dict[str, ET.Element] = {}
    textos: dict[str, ET.Element] = {}
    documents: dict[str, bytes] = {}
    for path in sorted(Path(folder).rglob("*.xml")):
        raw = path.read_bytes()
        try:
            root = ET.fromstring(raw)
        except ET.ParseError as exc:
            found.skipped[str(path)] = f"not XML ({exc})"
            continue
        meta, texto = root.find("data/metadatos"), root.find("data/texto")
        if root.tag == "response" and meta is not None and texto is not None:
            found.norms.append(Norm.from_document(raw))
        elif root.tag == "response" and meta is not None:
            metadatos[meta.findtext("identificador", "").strip()] = meta
        elif root.tag == "response" and texto is not None:
            textos[_texto_id(path, texto)] = texto
        elif root.tag == "documento" and root.find("metadatos/identificador") is not None:
            documents[root.findtext("metadatos/identificador").strip()] = raw
        else:
            found.skipped[str(path)] = f"not an API answer this stand-in serves (<{root.tag}>)"
    for boe_id, texto in textos.items():
        meta = metadatos.pop(boe_id, None)
        if meta is None and boe_id in documents:
            meta = _metadatos_of_document(ET.fromstring(documents[boe_id]))
        if meta is None:
            found.skipped[f"{boe_id} (texto)"] = "no metadatos of this norm in the folder"
            continue
        response = ET.fromstring(b"<response><status><code>200</code><text>ok</text></status><data/></response>")
        response.find("data").extend([meta, texto])
        raw = ET.tostring(response, encoding="utf-8", xml_declaration=True)
        found.norms.append(Norm.from_document(raw, diario_raw=documents.pop(boe_id, None)))
    for boe_id in metadatos:
        found.skipped[f"{boe_id} (metadatos)"] = "no text of this norm in the folder"
    for raw in documents.values():
        meta = ET.fromstring(raw).find("metadatos")
        found.diario.append(Norm(
            boe_id=meta.findtext("identificador", "").strip(), titulo=meta.findtext("titulo", "").strip(),
            fecha_actualizacion="", fecha_publicacion=meta.findtext("fecha_publicacion", "").strip(),
            consolidated=False, diario_raw=raw,
        ))  # fmt: skip
    return found


def _texto_id(path: Path, texto: ET.Element) -> str:
    """The norm a `/texto` answer belongs to: its file name's id, else the norm of its first wording."""
    named = re.match(r"[A-Z]{2,5}-[A-Za-z]-\d{4}-\d+", path.name)
    if named:
        return named[0]
    version = texto.find("bloque/version")
    return version.get("id_norma", "") if version is not None else ""


def _metadatos_of_document(root: ET.Element) -> ET.Element:
    """Catalogue-style metadatos from a diario document's: `origen_legislativo` is the `ambito`, and the
    document's `fecha_actualizacion` (YYYYMMDDHHMMSS) the norm's."""
    source = root.find("metadatos")
    meta = ET.Element("metadatos")
    stamp = root.get("fecha_actualizacion", "")
    ET.SubElement(meta, "fecha_actualizacion").text = f"{stamp[:8]}T{stamp[8:14] or '000000'}Z"
    for child in source:
        if child.tag == "origen_legislativo":
            ET.SubElement(meta, "ambito", codigo=child.get("codigo", "1")).text = child.text
        elif child.tag in ("identificador", "departamento", "rango", "fecha_disposicion", "numero_oficial", "titulo",
                           "diario", "fecha_publicacion", "diario_numero", "fecha_vigencia", "estatus_derogacion",
                           "estatus_anulacion", "vigencia_agotada", "estado_consolidacion"):  # fmt: skip
            meta.append(child)
    return meta


FAULT_HELP = """faults (--fault NAME[=VALUE], repeatable):
  outage=N            the next N requests answer --status (503)
  errors=N            every norm's first N answers are --status (503, or 429 with retry-after)
  status=CODE         the status of errors and outages (503, 429, 500 …)
  retry-after=VALUE   send Retry-After: VALUE (seconds, or an HTTP-date) with them
  listing=K[,K…]      the next catalogue answers go wrong: empty, blank, error, garbage, ok
  page-cap=N          pages hold at most N items
  ignore-sort         answer in the default order (ties reshuffled), whatever the sort asked
  missing=FIELD:SHARE that share of catalogue items lack FIELD (ambito, identificador, fecha_actualizacion …)
  empty-text=ID[:N]   the next N (1) answers for ID carry an empty <texto/>
  lag=ID[:N]          the next N (1) answers for ID are 404 while the catalogue lists it
  delay=SECONDS       every answer waits that long"""


def apply_fault(standin: StandIn, spec: str) -> None:
    """Set one `--fault NAME[=VALUE]` on `standin` (ValueError, with what was wrong, for a bad one)."""
    name, _, value = spec.partition("=")
    faults = standin.faults
    if name == "outage":
        faults.outage = int(value)
    elif name == "errors":
        for boe_id in standin.norms:
            faults.errors[f"/datosabiertos/api/legislacion-consolidada/id/{boe_id}"] = int(value)
    elif name == "status":
        faults.status = int(value)
    elif name == "retry-after":
        faults.retry_after = value
    elif name == "listing":
        kinds = value.split(",")
        if not set(kinds) <= set(LISTING_FAULTS):
            raise ValueError(f"listing takes {', '.join(LISTING_FAULTS)}, not {value!r}")
        faults.listing.extend(kinds)
    elif name == "page-cap":
        faults.page_cap = max(1, int(value))
    elif name == "ignore-sort":
        faults.ignore_sort = True
    elif name == "missing":
        field_name, _, share = value.partition(":")
        faults.missing[field_name] = float(share or 1)
    elif name in ("empty-text", "lag"):
        boe_id, _, times = value.partition(":")
        (faults.empty_texts if name == "empty-text" else faults.lagging)[boe_id] = int(times or 1)
    elif name == "delay":
        faults.delay = float(value)
    else:
        raise ValueError(f"unknown fault {name!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m legalsearch.standin", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A local stand-in for the BOE open-data API, to try `legalsearch sync` offline:\n"
        "  python -m legalsearch.standin --catalogue corpora/sample/boe-api --port 8099\n"
        "  legalsearch sync --api http://127.0.0.1:8099/datosabiertos/api --index /tmp/mirror",
        epilog=FAULT_HELP,
    )  # fmt: skip
    parser.add_argument("--port", type=int, default=8099, help="port on 127.0.0.1 (0: any free one) [8099]")
    parser.add_argument("--catalogue", type=Path, action="append", default=[],
                        help="a folder of real API XML files to serve (repeatable)")  # fmt: skip
    parser.add_argument("--synthetic", type=int, default=0, help="also serve this many made-up norms [0]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the made-up norms and of random faults")
    parser.add_argument("--fault", action="append", default=[], metavar="NAME[=VALUE]", help="see below")
    args = parser.parse_args(argv)
    standin = StandIn(port=args.port, seed=args.seed)
    skipped: dict[str, str] = {}
    for folder in args.catalogue:
        if not folder.is_dir():
            print(f"error: --catalogue {folder}: no such folder", file=sys.stderr)
            return 2
        found = load_folder(folder)
        standin.add(found.norms)
        for norm in found.diario:
            standin.diario.setdefault(norm.fecha_publicacion, []).append(norm)
        for norm in found.norms:
            if norm.diario_raw is not None:
                standin.diario.setdefault(norm.fecha_publicacion, []).append(norm)
        skipped.update(found.skipped)
    standin.add(synthetic_norms(args.synthetic, seed=args.seed))
    if not standin.norms:
        print("error: nothing to serve: give --catalogue FOLDER (real API XML files) or --synthetic N", file=sys.stderr)
        return 2
    for spec in args.fault:
        try:
            apply_fault(standin, spec)
        except ValueError as exc:
            print(f"error: --fault {spec}: {exc}; see --help", file=sys.stderr)
            return 2
    for path, why in skipped.items():
        print(f"note: skipped {path}: {why}", file=sys.stderr)
    try:
        standin.start()
    except OSError as exc:
        print(f"error: --port {args.port}: cannot listen on 127.0.0.1 ({exc.strerror}); try another", file=sys.stderr)
        return 2
    print(standin.url, flush=True)
    print(f"serving {len(standin.norms):,} norms and {sum(map(len, standin.diario.values()))} diario documents; "
          f"try: legalsearch sync --api {standin.url} --ambito todo --index /tmp/mirror (Ctrl-C stops)",
          file=sys.stderr, flush=True)  # fmt: skip
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        standin.stop()
    return 0


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


if __name__ == "__main__":
    raise SystemExit(main())
