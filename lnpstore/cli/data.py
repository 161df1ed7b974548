"""Store subcommands: info, query, sql."""

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

    store = Store.open(args.store)
    store.refresh_catalog()
    info = store.info
    print(f"store {store.root}  (schema {info['schema_version']}, created {info['created_at']})")
    _print_df(store.summary(), args.format)
    plates = store.read("plates")
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
    from lnpstore.store.core import Store, list_queries

    if args.list or not args.name:
        for name, doc in list_queries().items():
            print(f"{name:28s} {doc}")
        return 0
    store = Store.open(args.store)
    _print_df(store.query(args.name, **parse_params(args.param)), args.format)
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from lnpstore.cli.main import parse_params
    from lnpstore.store.core import Store

    store = Store.open(args.store)
    _print_df(store.sql(args.text, **parse_params(args.param)), args.format)
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

    p = sub.add_parser("sql", help="run SQL over the store's tables (DuckDB dialect)")
    p.add_argument("text", help='SQL, e.g. "SELECT well, count(*) FROM images GROUP BY well"')
    p.add_argument(
        "--store",
        default="lnpstore-run/store",
        help="store folder (default: %(default)s, the one `lnpstore run` makes)",
    )
    p.add_argument("--param", action="append", metavar="K=V", help="$name parameter, repeatable")
    _add_format(p)
    p.set_defaults(func=cmd_sql)
