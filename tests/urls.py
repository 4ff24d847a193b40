from django.contrib import admin
from django.urls import path

from tests.app.views import task_page

urlpatterns = [
    path("admin/", admin.site.urls),
    path("live/<uuid:task_id>/", task_page, name="task-page"),
]
