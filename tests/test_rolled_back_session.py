"""tests/conftest.py's ``rolled_back`` session: services may commit, nothing outlives the test."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models import Connection
from services.secrets import TokenCipher
from tests.factories import make_connection

pytestmark = pytest.mark.rolled_back


def connections(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Connection)) or 0)


@pytest.mark.parametrize("run", ["first", "second"])
def test_a_commit_holds_for_the_test_and_is_gone_after_it(session: Session, cipher: TokenCipher, run: str) -> None:
    # given: an empty database, whichever run comes first
    assert connections(session) == 0

    # when: a service-style commit, then a rollback of later work
    make_connection(session, cipher)
    make_connection(session, cipher, account_id="acct-later", company_id=2000, commit=False)
    session.rollback()

    # then: the commit stands, the rolled-back work does not
    assert connections(session) == 1


def test_a_failed_statement_rolls_back_to_the_last_commit_only(session: Session, cipher: TokenCipher) -> None:
    make_connection(session, cipher)

    with pytest.raises(IntegrityError):  # the same account twice
        make_connection(session, cipher)
    session.rollback()

    assert connections(session) == 1


def test_a_second_session_means_the_real_database(session: Session, session_factory: sessionmaker[Session], cipher: TokenCipher) -> None:
    make_connection(session, cipher)

    with session_factory() as other:
        assert connections(other) == 1
