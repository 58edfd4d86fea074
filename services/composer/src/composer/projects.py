"""The team's projects, which Stage B relates each link to."""

from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Project:
    name: str
    theme: str
    description: str
    topics: tuple[str, ...] = ()  # example topics a link about the project might cover (data/projects.yaml)


def load_projects(path: Path) -> list[Project]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    projects = [
        Project(p["name"], p["theme"], " ".join(p["description"].split()), tuple(p.get("topics") or ()))
        for p in data["projects"]
    ]
    if not projects:
        raise ValueError(f"{path} lists no projects")
    vague = [p.name or "(unnamed)" for p in projects if not (p.name and p.theme and p.description)]
    if vague:
        raise ValueError(f"{path}: every project needs a name, a theme and a description; these lack one: {vague}")
    return projects


def projects_context(projects: list[Project]) -> str:
    return "\n".join(f"- Theme: {p.theme} | Project: {p.name} | {p.description}" for p in projects)
