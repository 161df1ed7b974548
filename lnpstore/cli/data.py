"""Store subcommands: info, query, sql (reading only: no store lock; info refreshes the catalog when it may)."""

from __future__ import annotations

import argparse

import polars as pl


def _print_df(df: pl.DataFrame, fmt: str) -> None:
    if fmt == "csv":
        print(df.write_csv(), end="")
    elif fmt == "json":
        print(df.write_json())
    else:
        with pl.Config(tbl_rows=200, tbl_cols=30, fmt_str_lengths=60, tbl_width_chars=200):
            print(df)


def _add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["table", "csv", "json"], default="table", help="output format")


def cmd_info(args: argparse.Namespace) -> int:
    from lnpstore.store.core import Store
    from lnpstore.store.errors import StoreDamaged

    store = Store.open(args.store)
    if store.writable:  # reading works on a read-only store too; the catalog is then left as it is
        store.refresh_catalog()
    info = store.info
    print(f"store {store.root}  (schema {info['schema_version']}, created {info['created_at']})")
    summary = store.summary()  # counts from the manifests
    _print_df(summary, args.format)
    n_bad = int(summary["damaged"].sum())
    if n_bad:
        print(
            f"warning: {n_bad} damaged file(s); `lnpstore check {store.root}` lists them and what to re-run"
        )
    try:
        plates = store.read("plates")
    except StoreDamaged as exc:
        print(f"plates: {exc}")
        return 1
    if plates.height:
        _print_df(
            plates.select(
                "plate",
                "instrument",
                "pixel_size_um",
                "n_wells",
                "n_fields",
                "n_frames",
                "n_images",
                "n_problems",
                "data_version",
            ),
            args.format,
        )
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from lnpstore.cli.main import parse_params
    from lnpstore.store.core import Store, list_queries, query_params, read_query

    if args.list or not args.name:
        for name, doc in list_queries().items():
            print(f"{name:28s} {doc}")
        return 0
    store = Store.open(args.store)
    text = read_query(args.name)
    params = parse_params(args.param)
    missing = query_params(text) - set(params)
    if missing:
        store.query(args.name, **params)  # raises the QueryError naming the missing parameters
    used = {k: v for k, v in params.items() if k in query_params(text)}
    _print_df(store.sandboxed_sql(text, used), args.format)
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from lnpstore.cli.main import parse_params
    from lnpstore.store.core import Store

    store = Store.open(args.store)  # read-only: no lock, no catalog refresh
    df = store.sandboxed_sql(
        args.text, parse_params(args.param), allow_write=args.allow_write, allow_files=args.allow_files
    )
    _print_df(df, args.format)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="tables, row counts and plates of a store")
    p.add_argument("store", help="store folder")
    _add_format(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("query", help="run a named query from queries/ (no NAME: list them)")
    p.add_argument("name", nargs="?", help="query name, e.g. plate_summary")
    p.add_argument(
        "--store",
        default="lnpstore-run/store",
        help="store folder (default: %(default)s, the one `lnpstore run` makes)",
    )
    p.add_argument("--param", action="append", metavar="K=V", help="query parameter, repeatable")
    p.add_argument("--list", action="store_true", help="list the named queries")
    _add_format(p)
    p.set_defaults(func=cmd_query)

    p = sub.add_parser(
        "sql",
        help="run SQL over the store's tables (DuckDB dialect; read-only unless --allow-write)",
        description="Runs SQL over the store's tables. By default only SELECT/EXPLAIN statements run and "
        "DuckDB reads only the store's own files (no COPY, ATTACH, INSTALL, read_text of other files).",
    )
    p.add_argument("text", help='SQL, e.g. "SELECT well, count(*) FROM images GROUP BY well"')
    p.add_argument(
        "--store",
        default="lnpstore-run/store",
        help="store folder (default: %(default)s, the one `lnpstore run` makes)",
    )
    p.add_argument("--param", action="append", metavar="K=V", help="$name parameter, repeatable")
    p.add_argument("--allow-files", action="store_true", help="let the SQL read files outside the store")
    p.add_argument(
        "--allow-write",
        action="store_true",
        help="let the SQL run any statement and write files (COPY ... TO for exports; implies --allow-files)",
    )
    _add_format(p)
    p.set_defaults(func=cmd_sql)
