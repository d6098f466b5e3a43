#!/usr/bin/env python3
"""The struct_size rule of include/metafed.h, checked on two abidw dumps (scripts/abi.sh check).

    scripts/abi-layout.py RECORDED.abi CURRENT.abi

A struct whose first field is `uint32_t struct_size` may grow only by fields appended past its
recorded size: every recorded field keeps its name, offset and type. Any other struct (one
without struct_size, such as metafed_failure, embedded in metafed_completion, or metafed_attempt,
passed by value) must keep its exact layout. abidiff's own suppression for "data members
inserted at the end" also lets a field change type when the struct grows, so abi.sh runs this
check beside it. Exits 1, naming each violation, when the rule is broken.
"""

import sys
import xml.etree.ElementTree as ET


class Dump:
    def __init__(self, path: str) -> None:
        root = ET.parse(path).getroot()
        self.by_id = {e.get("id"): e for e in root.iter() if e.get("id")}
        self.structs = {e.get("name"): e for e in root.iter("class-decl") if e.get("name", "").startswith("metafed_")}

    def type_name(self, type_id: str, depth: int = 0) -> str:
        e = self.by_id.get(type_id)
        if e is None or depth > 32:
            return f"?{type_id}"
        inner = lambda: self.type_name(e.get("type-id", ""), depth + 1)  # noqa: E731
        tag = e.tag
        if tag in ("type-decl", "typedef-decl"):
            return e.get("name", "?")
        if tag == "class-decl":
            return "struct " + e.get("name", "?")
        if tag == "pointer-type-def":
            return inner() + "*"
        if tag == "qualified-type-def":
            return ("const " if e.get("const") == "yes" else "volatile ") + inner()
        if tag == "array-type-def":
            dims = "".join(f"[{s.get('length', '?')}]" for s in e.iter("subrange"))
            return self.type_name(e.get("element-type-id", ""), depth + 1) + dims
        if tag == "function-type":
            params = ", ".join(self.type_name(p.get("type-id", ""), depth + 1) for p in e.iter("parameter"))
            ret = e.find("return")
            return f"fn({params}) -> {self.type_name(ret.get('type-id', '') if ret is not None else '', depth + 1)}"
        return f"{tag} {e.get('name', '')}".strip()

    def members(self, struct: ET.Element) -> list[tuple[str, int, str]]:
        out = []
        for m in struct.iter("data-member"):
            v = m.find("var-decl")
            if v is not None:
                out.append((v.get("name", "?"), int(m.get("layout-offset-in-bits", "0")), self.type_name(v.get("type-id", ""))))
        return out


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    old, new = Dump(sys.argv[1]), Dump(sys.argv[2])
    problems = []
    for name, old_struct in sorted(old.structs.items()):
        if old_struct.get("is-declaration-only") == "yes":
            continue  # an opaque handle: no layout
        new_struct = new.structs.get(name)
        if new_struct is None:
            problems.append(f"{name}: removed")
            continue
        old_size, new_size = int(old_struct.get("size-in-bits", "0")), int(new_struct.get("size-in-bits", "0"))
        old_members, new_members = old.members(old_struct), new.members(new_struct)
        sized = bool(old_members) and old_members[0][0] == "struct_size" and old_members[0][2] == "uint32_t"
        for member in old_members:
            if member not in new_members:
                now = [m for m in new_members if m[0] == member[0]]
                problems.append(f"{name}.{member[0]}: was {member[2]} at bit {member[1]}, now " + (f"{now[0][2]} at bit {now[0][1]}" if now else "gone"))
        if sized:
            if new_size < old_size:
                problems.append(f"{name}: shrank from {old_size // 8} to {new_size // 8} bytes")
            old_names = {m[0] for m in old_members}
            for member in new_members:
                if member[0] not in old_names and member[1] < old_size:
                    problems.append(f"{name}.{member[0]}: added at bit {member[1]}, inside the recorded {old_size // 8} bytes (append past the end)")
        elif (new_size, new_members) != (old_size, old_members):
            problems.append(f"{name}: has no struct_size, so its layout may not change ({old_size // 8} -> {new_size // 8} bytes)")
    for p in problems:
        print(f"abi-layout: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
