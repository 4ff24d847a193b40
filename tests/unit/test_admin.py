"""The admin pages, through Django's test client as a logged-in superuser (or a
staff user with only some permissions)."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from cq.cron import get_zone, upcoming
from cq.models import RepeatingTask, Task
from tests.app import tasks

pytestmark = pytest.mark.django_db

ADD = reverse("admin:cq_repeatingtask_add")
REPEATING_LIST = reverse("admin:cq_repeatingtask_changelist")
TASK_LIST = reverse("admin:cq_task_changelist")


def change_url(obj):
    return reverse(f"admin:cq_{obj._meta.model_name}_change", args=[obj.pk])


def form_data(**fields):
    data = {
        "func_name": "tests.app.tasks.add",
        "args": "[1, 2]",
        "kwargs": "{}",
        "result_ttl": "",
        "crontab": "*/5 * * * *",
        "timezone": "",
        "enabled": "on",
        "coalesce": "on",
    }
    data.update(fields)
    return {key: value for key, value in data.items() if value is not None}


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


# ---- repeating tasks


def test_the_function_is_chosen_among_registered_tasks(admin_client):
    page = admin_client.get(ADD).content.decode()
    assert '<option value="tests.app.tasks.record_run">' in page
    assert '<option value="cq.tasks.clean_up">' in page
    assert "os.system" not in page


def test_adding_a_repeating_task_schedules_it(admin_client):
    before = timezone.now()
    response = admin_client.post(ADD, form_data())
    assert response.status_code == 302, response.context["adminform"].form.errors
    added = RepeatingTask.objects.get()
    assert (added.func_name, added.args) == ("tests.app.tasks.add", [1, 2])
    assert added.crontab == "*/5 * * * *"
    assert before < added.next_run <= before + timedelta(minutes=5)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("crontab", "61 * * * *", "the minute field '61' is not valid"),
        ("crontab", "* * * *", "has 4 field(s); a crontab has five"),
        ("crontab", "*/5 * * * * 30", "there is no seconds field"),
        ("func_name", "os.system", "no @task is registered as 'os.system'"),
        ("timezone", "Mars/Base", "unknown time zone 'Mars/Base'"),
        ("args", '{"a": 1}', "args must be a list"),
        ("args", "[1, 2, 3]", "too many positional arguments"),
        ("kwargs", '{"currencyy": "EUR"}', "unexpected keyword argument 'currencyy'"),
        ("args", "[1]", "missing a required argument: 'b'"),
    ],
)
def test_invalid_input_is_shown_on_the_form(admin_client, field, value, message):
    response = admin_client.post(ADD, form_data(**{field: value}))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors[field])
    assert "errornote" in response.content.decode()
    assert not RepeatingTask.objects.exists()


def test_changing_the_crontab_in_the_admin_recomputes_next_run(admin_client):
    task = RepeatingTask.schedule("0 3 * * *", tasks.add, (1, 2), timezone="UTC")
    before = timezone.now()
    response = admin_client.post(change_url(task), form_data(crontab="*/2 * * * *", timezone="UTC"))
    assert response.status_code == 302
    task.refresh_from_db()
    assert before < task.next_run <= before + timedelta(minutes=2)


def test_the_change_page_shows_the_schedule_and_the_next_five_runs(admin_client):
    task = RepeatingTask.schedule("0 3 * * *", tasks.add, (1, 2), timezone="Europe/Paris")
    page = admin_client.get(change_url(task)).content.decode()
    assert "At 03:00" in page
    zone = get_zone("Europe/Paris")
    for run in upcoming("0 3 * * *", timezone.now(), zone, 5):
        assert f"{run.astimezone(zone):%Y-%m-%d %H:%M:%S} Europe/Paris" in page


def test_next_run_is_shown_on_the_schedules_own_clock_with_its_zone_named(admin_client):
    task = RepeatingTask.schedule("0 8 * * *", tasks.add, (1, 2), timezone="Europe/Paris")
    RepeatingTask.objects.filter(pk=task.pk).update(
        next_run=datetime(2026, 11, 26, 7, 0, tzinfo=UTC),
        last_run=datetime(2026, 11, 25, 7, 0, 5, tzinfo=UTC),
    )
    for url in (REPEATING_LIST, change_url(task)):
        page = admin_client.get(url).content.decode()
        assert "2026-11-26 08:00:00 Europe/Paris" in page
        assert "2026-11-25 08:00:05 Europe/Paris" in page


def test_the_list_describes_each_schedule(admin_client):
    RepeatingTask.schedule("*/5 * * * *", tasks.add, (1, 2))
    RepeatingTask.schedule("*/5 9-17 * * 1-5", tasks.add, (1, 2))
    page = admin_client.get(REPEATING_LIST).content.decode()
    assert "Every 5 minutes" in page
    assert "Every 5 minutes, between 09:00 and 17:59, Monday through Friday" in page


def run_action(client, action, objects):
    return client.post(
        REPEATING_LIST,
        {
            "action": action,
            "_selected_action": [obj.pk for obj in objects],
        },
        follow=True,
    )


def test_run_now_launches_a_run_of_each_selected_task(admin_client):
    first = RepeatingTask.schedule("0 3 * * *", tasks.add, (1, 2))
    response = run_action(admin_client, "run_now", [first])
    assert "1 repeating task launched." in messages_of(response)
    [run] = Task.objects.filter(repeating_task=first)
    assert (run.func_name, run.args) == ("tests.app.tasks.add", [1, 2])
    assert run.status == Task.STATUS_QUEUED
    first.refresh_from_db()
    assert first.last_run is not None

    second = RepeatingTask.schedule("0 4 * * *", tasks.add, (3, 4))
    response = run_action(admin_client, "run_now", [first, second])
    assert "2 repeating tasks launched." in messages_of(response)
    assert Task.objects.count() == 3


def test_enable_and_disable_say_how_many_changed(admin_client):
    one = RepeatingTask.schedule("0 3 * * *", tasks.add, (1, 2))
    two = RepeatingTask.schedule("0 4 * * *", tasks.add, (1, 2))
    response = run_action(admin_client, "disable", [one, two])
    assert "2 repeating tasks disabled." in messages_of(response)
    assert list(RepeatingTask.objects.values_list("enabled", "next_run")) == [(False, None)] * 2
    response = run_action(admin_client, "enable", [one])
    assert "1 repeating task enabled." in messages_of(response)
    one.refresh_from_db()
    assert one.enabled and one.next_run > timezone.now()


def test_the_runs_of_a_repeating_task_are_one_click_away(admin_client):
    task = RepeatingTask.schedule("0 3 * * *", tasks.add, (1, 2))
    launched = tasks.add.delay_args((5, 6), repeating_task=task)
    tasks.add.delay(7, 8)
    page = admin_client.get(change_url(task)).content.decode()
    assert f"{TASK_LIST}?repeating_task__id__exact={task.pk}" in page
    listed = admin_client.get(TASK_LIST, {"repeating_task__id__exact": task.pk})
    assert [t.pk for t in listed.context["cl"].result_list] == [launched.pk]


def test_deleting_a_repeating_task_in_the_admin_keeps_its_runs(admin_client):
    task = RepeatingTask.schedule("0 3 * * *", tasks.add, (1, 2))
    run = tasks.add.delay_args((1, 2), repeating_task=task)
    delete = reverse("admin:cq_repeatingtask_delete", args=[task.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 302
    assert not RepeatingTask.objects.exists()
    assert Task.objects.get(pk=run.pk).repeating_task_id is None


# ---- tasks (read only)


def listed_ids(response):
    return {task.pk for task in response.context["cl"].result_list}


def test_the_task_list_filters_by_status_and_searches_by_id_and_name(admin_client):
    done = tasks.add.delay(1, 2)
    failed = tasks.fail.delay()
    Task.objects.filter(pk=done.pk).update(status=Task.STATUS_SUCCESS)
    Task.objects.filter(pk=failed.pk).update(status=Task.STATUS_FAILURE)
    assert listed_ids(admin_client.get(TASK_LIST, {"status__exact": "F"})) == {failed.pk}
    assert listed_ids(admin_client.get(TASK_LIST, {"q": str(done.pk)})) == {done.pk}
    assert listed_ids(admin_client.get(TASK_LIST, {"q": str(done.pk)[:8]})) == {done.pk}
    assert listed_ids(admin_client.get(TASK_LIST, {"q": "tasks.fail"})) == {failed.pk}


def test_the_task_page_shows_what_ran_with_user_data_escaped(admin_client):
    task = Task.objects.create(
        func_name="tests.app.tasks.fail",
        status=Task.STATUS_FAILURE,
        args=["<b>bold</b>"],
        kwargs={"to": "a@b.c"},
        result={"html": "<i>x</i>"},
        error="ValueError: <script>alert(1)</script>",
        traceback='Traceback (most recent call last):\n  File "x.py"\n'
        "ValueError: <script>alert(2)</script>",
        logs=[
            {
                "message": "<img src=x onerror=alert(3)>",
                "level": "WARNING",
                "timestamp": "2030-01-01T03:00:00+00:00",
                "task": "tests.app.tasks.fail",
            }
        ],
        started=timezone.now(),
        finished=timezone.now() + timedelta(seconds=2),
    )
    page = admin_client.get(change_url(task)).content.decode()
    for raw in ["<script>alert", "<img src=x", "<b>bold</b>", "<i>x</i>"]:
        assert raw not in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(3)&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "a@b.c" in page and "WARNING" in page
    assert "2.000 s" in page


def test_the_task_page_links_the_tree_and_the_chain(admin_client):
    parent = Task.objects.create(func_name="tests.app.tasks.spawn", status=Task.STATUS_WAITING)
    child = Task.objects.create(func_name="tests.app.tasks.add", parent=parent, root=parent)
    follower = Task.objects.create(func_name="tests.app.tasks.add", previous=parent)
    page = admin_client.get(change_url(parent)).content.decode()
    assert change_url(child) in page
    assert change_url(follower) in page
    child_page = admin_client.get(change_url(child)).content.decode()
    assert child_page.count(change_url(parent)) >= 2  # parent and top-level task


def test_the_task_page_shows_the_unique_key(admin_client):
    task = Task.objects.create(func_name="tests.app.tasks.add", unique_key="tests.add:user-7")
    assert "tests.add:user-7" in admin_client.get(change_url(task)).content.decode()


def test_task_times_are_shown_to_the_second_with_the_zone_named(admin_client):
    task = Task.objects.create(func_name="tests.app.tasks.add", args=[1, 2], kwargs={})
    Task.objects.filter(pk=task.pk).update(
        submitted=datetime(2026, 11, 25, 9, 30, 1, tzinfo=UTC),
        started=datetime(2026, 11, 25, 9, 30, 2, tzinfo=UTC),
        finished=datetime(2026, 11, 25, 9, 30, 7, tzinfo=UTC),
    )
    # The list shows when it was submitted and how long it ran (it must fit
    # 1280 px); the task's page shows every time.
    listed = admin_client.get(TASK_LIST).content.decode()
    assert "2026-11-25<br>09:30:01 UTC" in listed and "5.000 s" in listed
    page = admin_client.get(change_url(task)).content.decode()
    for second in ("01", "02", "07"):
        assert f"2026-11-25 09:30:{second} UTC" in page


def test_tasks_cannot_be_added_changed_or_deleted(admin_client):
    task = tasks.add.delay(1, 2)
    assert admin_client.get(reverse("admin:cq_task_add")).status_code == 403
    page = admin_client.get(change_url(task))
    assert page.status_code == 200 and b'name="_save"' not in page.content
    response = admin_client.post(change_url(task), {"func_name": "os.system"})
    assert response.status_code == 403
    assert Task.objects.get(pk=task.pk).func_name == "tests.app.tasks.add"
    assert admin_client.get(reverse("admin:cq_task_delete", args=[task.pk])).status_code == 403


def test_an_unknown_task_page_redirects_instead_of_failing(admin_client):
    response = admin_client.get(reverse("admin:cq_task_change", args=[uuid.uuid4()]))
    assert response.status_code == 302


def test_a_task_name_no_longer_registered_stays_visible_and_is_refused(admin_client):
    task = RepeatingTask.schedule("0 3 * * *", tasks.add, (1, 2))
    RepeatingTask.objects.filter(pk=task.pk).update(func_name="shop.tasks.removed")
    page = admin_client.get(change_url(task)).content.decode()
    assert "shop.tasks.removed (not registered)" in page
    response = admin_client.post(change_url(task), form_data(func_name="shop.tasks.removed"))
    assert "no @task is registered as 'shop.tasks.removed'" in " ".join(
        response.context["adminform"].form.errors["func_name"]
    )


# ---- permissions


def staff_client(client, *codenames):
    """A client logged in as a staff user with only these cq permissions."""
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user("staff", password="x", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="cq",
            codename__in=codenames,
        )
    )
    client.force_login(user)
    return client


def offered_actions(response):
    form = response.context["action_form"]  # None when no action is offered
    return [] if form is None else [name for name, _ in form.fields["action"].choices if name]


@pytest.mark.parametrize("action", ["run_now", "enable", "disable"])
def test_a_view_only_user_can_neither_see_nor_use_the_actions(client, action):
    viewer = staff_client(client, "view_repeatingtask")
    enabled = RepeatingTask.schedule("0 3 * * *", tasks.add, (1, 2))
    disabled = RepeatingTask.schedule("0 4 * * *", tasks.add, (1, 2), enabled=False)
    listing = viewer.get(REPEATING_LIST)
    assert listing.status_code == 200
    assert offered_actions(listing) == []
    response = run_action(viewer, action, [enabled, disabled])
    assert response.status_code == 200 and not messages_of(response)
    assert not Task.objects.exists()
    assert list(
        RepeatingTask.objects.order_by("func_name", "crontab").values_list("enabled", flat=True)
    ) == [True, False]


def test_a_user_with_change_permission_can_use_the_actions(client):
    editor = staff_client(client, "view_repeatingtask", "change_repeatingtask")
    task = RepeatingTask.schedule("0 3 * * *", tasks.add, (1, 2))
    assert set(offered_actions(editor.get(REPEATING_LIST))) == {"run_now", "enable", "disable"}
    assert "1 repeating task launched." in messages_of(run_action(editor, "run_now", [task]))
    assert "1 repeating task disabled." in messages_of(run_action(editor, "disable", [task]))
    assert Task.objects.filter(repeating_task=task).count() == 1


def test_the_task_list_offers_retry_and_revoke_to_a_superuser(admin_client):
    tasks.add.delay(1, 2)
    assert offered_actions(admin_client.get(TASK_LIST)) == ["retry_tasks", "revoke_tasks"]
