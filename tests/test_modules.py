import pytest

from glasswork import define_module, provide
from glasswork.jobs import ConfigurationError, bootstrap_worker, define_job
from glasswork.modules import snake_case
from glasswork.services import Services


class Database:
    instances = 0

    def __init__(self) -> None:
        Database.instances += 1


class UserService:
    def __init__(self, db: Database) -> None:
        self.db = db


class EmailService:
    def __init__(self, users: UserService, sender: str = "noreply@example.com") -> None:
        self.users = users
        self.sender = sender


class HTTPClient:
    pass


def test_snake_case_names():
    assert snake_case("UserService") == "user_service"
    assert snake_case("HTTPClient") == "http_client"
    assert snake_case("S3Uploader") == "s3_uploader"


def test_services_are_built_once_with_dependencies_by_type_hint():
    Database.instances = 0
    module = define_module(name="app", providers=[Database, UserService, EmailService])
    services = Services.for_module(module)
    email = services.email_service
    assert email.users is services.user_service
    assert email.users.db is services.database
    assert email.sender == "noreply@example.com"
    assert services.get(UserService) is services.user_service
    assert services["database"] is services.database
    assert Database.instances == 1


def test_imported_modules_provide_services_and_importer_overrides():
    class FakeDatabase(Database):
        pass

    core = define_module(name="core", providers=[Database, UserService])
    app = define_module(
        name="app", providers=[provide(Database, use_class=FakeDatabase)], imports=[core]
    )
    services = Services.for_module(app)
    assert isinstance(services.user_service.db, FakeDatabase)


def test_provide_values_factories_and_instances():
    clock = object()

    def mailer(users: UserService) -> EmailService:
        return EmailService(users, sender="factory@example.com")

    http = HTTPClient()
    module = define_module(
        name="app",
        providers=[Database, UserService, provide("clock", use_value=clock), mailer, http],
    )
    services = Services.for_module(module)
    assert services.clock is clock
    assert services.mailer.sender == "factory@example.com"
    assert services.http_client is http
    assert services.get(HTTPClient) is http


def test_missing_dependency_is_a_clear_error():
    services = Services.for_module(define_module(name="app", providers=[UserService]))
    with pytest.raises(ConfigurationError, match=r"'user_service'.*'db' \(Database\)"):
        services.user_service


def test_unknown_service_lists_what_exists():
    services = Services.for_module(define_module(name="app", providers=[Database]))
    with pytest.raises(AttributeError, match=r"no service named 'mailer'.*database"):
        services.mailer


def test_circular_dependency_is_reported():
    class A:
        def __init__(self, b: "B") -> None: ...

    class B:
        def __init__(self, a: A) -> None: ...

    # Type hints that cannot be resolved fall back to parameter names.
    module = define_module(
        name="app",
        providers=[
            provide("a", use_factory=lambda b: A(b)),
            provide("b", use_factory=lambda a: B(a)),
        ],
    )
    with pytest.raises(ConfigurationError, match="circular provider dependency: a -> b -> a"):
        Services.for_module(module).a


def test_provide_needs_exactly_one_source():
    with pytest.raises(ConfigurationError, match="exactly one"):
        provide("x")
    with pytest.raises(ConfigurationError, match="exactly one"):
        provide("x", use_value=1, use_factory=lambda: 1)


def test_imports_must_be_modules():
    with pytest.raises(ConfigurationError, match="imports must be modules"):
        define_module(name="app", imports=["core"])


def noop(payload, ctx):
    return None


def test_worker_discovers_jobs_of_imported_modules_once():
    a = define_job(name="a", handler=noop)
    b = define_job(name="b", handler=noop)
    shared = define_module(name="shared", jobs=[a])
    left = define_module(name="left", jobs=[b], imports=[shared])
    right = define_module(name="right", imports=[shared])
    app = define_module(name="app", imports=[left, right])
    assert bootstrap_worker(module=app).registry.names() == ["a", "b"]


def test_duplicate_job_names_are_refused_at_bootstrap():
    one = define_module(name="one", jobs=[define_job(name="send", handler=noop)])
    two = define_module(name="two", jobs=[define_job(name="send", handler=noop)])
    app = define_module(name="app", imports=[one, two])
    with pytest.raises(ConfigurationError, match="two different jobs are named 'send'"):
        bootstrap_worker(module=app)


class Clock:
    pass


def test_services_get_by_class() -> None:
    services = Services.for_module(define_module(name="m", providers=[Clock]))
    clock: Clock = services.get(Clock)
    assert isinstance(clock, Clock) and services.get("clock") is clock
