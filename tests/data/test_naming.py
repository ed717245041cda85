import pytest

from pneumo.data.naming import parse_name


@pytest.mark.parametrize(
    ("name", "label", "patient", "subtype"),
    [
        ("person1946_bacteria_4874.jpeg", 1, "1946", "bacteria"),
        ("person1_virus_6.jpeg", 1, "1", "virus"),
        ("PERSON12_Virus_9.JPG", 1, "12", "virus"),
        ("person1000_bacteria_2931.jpeg", 1, "1000", "bacteria"),
        ("IM-0115-0001.jpeg", 0, "IM-0115", "normal"),
        ("NORMAL2-IM-1427-0001.jpeg", 0, "NORMAL2-IM-1427", "normal"),
        ("im-0115-0002.png", 0, "IM-0115", "normal"),
        ("scan_42.png", 0, "scan_42", "normal"),
        ("scan_42.png", 1, "scan_42", "unknown"),
    ],
)
def test_parse_name(name: str, label: int, patient: str, subtype: str) -> None:
    assert parse_name(name, label) == (patient, subtype)


def test_two_normal_series_are_different_patients() -> None:
    assert parse_name("IM-1427-0001.jpeg", 0)[0] != parse_name("NORMAL2-IM-1427-0001.jpeg", 0)[0]


def test_films_of_one_patient_share_the_id() -> None:
    assert parse_name("person7_bacteria_24.jpeg", 1)[0] == parse_name("person7_bacteria_25.jpeg", 1)[0]
