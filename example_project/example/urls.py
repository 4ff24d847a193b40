from demo.views import task_page
from django.urls import path

urlpatterns = [path("tasks/<uuid:task_id>/", task_page, name="task-page")]
