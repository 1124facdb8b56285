#!/usr/bin/env python3
"""Strict check of Prometheus text exposition format 0.0.4 read on stdin.

Every line is a HELP, a TYPE or a sample; every family has exactly one HELP and one TYPE, given
before its samples; samples of a family are contiguous; names and label names match the
format's grammar; label values use only the allowed escapes; values are floats (or NaN/+Inf/-Inf);
no (name, labels) repeats; counters' names end in _total. Prints name{labels} value lines
normalised, one per sample, and exits 1 with a message at the first violation.
"""
import re
import sys

NAME = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')
LABEL = re.compile(r'[a-zA-Z_][a-zA-Z0-9_]*')
VALUE = re.compile(r'^(?:[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|NaN|[+-]Inf)$')
TYPES = {'counter', 'gauge', 'histogram', 'summary', 'untyped'}


def fail(n, line, msg):
    print('check_metrics: line %d: %s: %r' % (n, msg, line), file=sys.stderr)
    sys.exit(1)


def parse_labels(s, n, line):
    labels = []
    i = 0
    while i < len(s):
        m = LABEL.match(s, i)
        if not m:
            fail(n, line, 'bad label name')
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            fail(n, line, 'label without ="')
        i += 2
        val = []
        while True:
            if i >= len(s):
                fail(n, line, 'unterminated label value')
            c = s[i]
            if c == '\\':
                if i + 1 >= len(s) or s[i + 1] not in '\\"n':
                    fail(n, line, 'bad escape in label value')
                val.append({'\\': '\\', '"': '"', 'n': '\n'}[s[i + 1]])
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == '\n':
                fail(n, line, 'raw line feed in label value')
            else:
                val.append(c)
                i += 1
        labels.append((name, ''.join(val)))
        if i < len(s):
            if s[i] != ',':
                fail(n, line, 'labels not separated by a comma')
            i += 1
    names = [k for k, _ in labels]
    if len(set(names)) != len(names):
        fail(n, line, 'repeated label name')
    return tuple(labels)


def main():
    text = sys.stdin.read()
    if text and not text.endswith('\n'):
        fail(0, text[-40:], 'output does not end with a line feed')
    helps, types, done, seen = {}, {}, set(), set()
    current = None
    for n, line in enumerate(text.split('\n')[:-1], 1):
        if line.startswith('#'):
            parts = line.split(' ', 3)
            if len(parts) >= 3 and parts[1] in ('HELP', 'TYPE'):
                name = parts[2]
                if not NAME.fullmatch(name):
                    fail(n, line, 'bad metric name')
                table = helps if parts[1] == 'HELP' else types
                if name in table:
                    fail(n, line, 'second %s for the family' % parts[1])
                if name in done or (current and current != name and name in (helps.keys() | types.keys())):
                    fail(n, line, 'family metadata after its samples')
                if parts[1] == 'TYPE':
                    if len(parts) != 4 or parts[3] not in TYPES:
                        fail(n, line, 'bad type')
                    if parts[3] == 'counter' and not name.endswith('_total'):
                        fail(n, line, 'counter name does not end in _total')
                elif len(parts) != 4 or not parts[3]:
                    fail(n, line, 'empty HELP')
                table[name] = parts[3]
                if current != name:
                    if current:
                        done.add(current)
                    current = name
                continue
            fail(n, line, 'comment that is neither HELP nor TYPE')
        if not line:
            fail(n, line, 'empty line')
        m = NAME.match(line)
        if not m:
            fail(n, line, 'bad sample name')
        name = m.group(0)
        rest = line[m.end():]
        labels = ()
        if rest.startswith('{'):
            end = rest.rfind('}')
            if end < 0:
                fail(n, line, 'unterminated labels')
            labels = parse_labels(rest[1:end], n, line)
            rest = rest[end + 1:]
        if not rest.startswith(' '):
            fail(n, line, 'no space before the value')
        fields = rest[1:].split(' ')
        if len(fields) not in (1, 2) or not VALUE.match(fields[0]):
            fail(n, line, 'bad value')
        if len(fields) == 2 and not re.fullmatch(r'-?\d+', fields[1]):
            fail(n, line, 'bad timestamp')
        if name not in types or name not in helps:
            fail(n, line, 'sample before its family\'s HELP and TYPE')
        if name != current:
            fail(n, line, 'samples of a family are not contiguous')
        if (name, labels) in seen:
            fail(n, line, 'repeated series')
        seen.add((name, labels))
        lab = ','.join('%s="%s"' % kv for kv in labels)
        print('%s%s %s' % (name, '{' + lab + '}' if lab else '', fields[0]))
    for name in helps.keys() | types.keys():
        if name not in helps or name not in types:
            fail(0, name, 'family lacks HELP or TYPE')


if __name__ == '__main__':
    main()
