#!/usr/bin/env python3
"""Read an anomstream.attack_chart() SVG on stdin and print the values its geometry shows.

Checks the document is well-formed SVG with one path per series, one legend entry per series and
distinct colours, then recovers each vertex's value from the y-axis ticks (value <-> y position)
and its window from the x-axis ticks (x position <-> window start). Output, one line per vertex:
    machine<TAB>window_start_utc<TAB>value
Exit status 1 with a message on any inconsistency.
"""
import sys
import xml.etree.ElementTree as ET

NS = '{http://www.w3.org/2000/svg}'


def fail(msg):
    print('svg_points: ' + msg, file=sys.stderr)
    sys.exit(1)


def main():
    data = sys.stdin.read()
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        fail('not well-formed: %s' % e)
    if root.tag != NS + 'svg':
        fail('root element is %s, not svg' % root.tag)
    for t in ('title',):
        if root.find(NS + t) is None:
            fail('no <%s>' % t)
    texts = [''.join(e.itertext()) for e in root.iter(NS + 'text')]
    if not any(t.startswith('Potential attacks per machine') for t in texts):
        fail('no chart title')
    if not any(t.startswith('Window start') for t in texts) or not any(t.startswith('Potential attacks (') for t in texts):
        fail('axis labels missing')

    # y scale from the ticks: two ticks give the linear map y -> value.
    yt = [(float(e.get('data-value')), float(e.get('y'))) for e in root.iter(NS + 'text')
          if e.get('class') == 'y-tick']
    if len(yt) < 2:
        fail('fewer than two y ticks')
    for e in root.iter(NS + 'text'):
        if e.get('class') == 'y-tick' and ''.join(e.itertext()) != e.get('data-value'):
            fail('y tick label differs from its value')
    (v0, y0), (v1, y1) = yt[0], yt[-1]
    def value_at(y):
        return v0 + (y - y0) * (v1 - v0) / (y1 - y0)

    # x positions of the windows: every window has a tick line carrying its start.
    xt = {}
    for e in root.iter(NS + 'line'):
        if e.get('class') == 'tick':
            xt[round(float(e.get('x1')), 1)] = e.get('data-window-start')
    if not xt:
        xt = {}

    series = [g for g in root.iter(NS + 'g') if g.get('class') == 'series']
    legend = [g for g in root.iter(NS + 'g') if g.get('class') == 'legend-item']
    if [g.get('data-machine') for g in series] != [g.get('data-machine') for g in legend]:
        fail('legend does not list the series in order')
    for g in legend:
        if ''.join(g.itertext()) != 'machine ' + g.get('data-machine'):
            fail('legend text of machine %s is %r' % (g.get('data-machine'), ''.join(g.itertext())))
    styles = []
    for g in series:
        paths = g.findall(NS + 'path')
        if len(paths) != 1:
            fail('series %s has %d paths' % (g.get('data-machine'), len(paths)))
        styles.append((paths[0].get('stroke'), paths[0].get('stroke-dasharray')))
    if len(set(styles)) != len(styles):
        fail('two series share a line style')
    machines = [g.get('data-machine') for g in series]
    if len(set(machines)) != len(machines):
        fail('a machine has two series')

    for g in series:
        d = g.find(NS + 'path').get('d').replace('M', ' ').replace('L', ' ').split()
        pts = [(float(d[i]), float(d[i + 1])) for i in range(0, len(d), 2)]
        xs = [x for x, _ in pts]
        if xs != sorted(xs) or len(set(xs)) != len(xs):
            fail('series %s does not advance along x' % g.get('data-machine'))
        for x, y in pts:
            ws = xt.get(round(x, 1))
            if ws is None:
                fail('vertex at x=%.1f has no labelled window' % x)
            v = value_at(y)
            # coordinates carry one decimal: allow that rounding (0.05 px), nothing more
            tol = 0.051 * abs(v1 - v0) / abs(y1 - y0)
            if abs(v - round(v)) > tol:
                fail('vertex value %.6f is not an integer' % v)
            print('%s\t%s\t%d' % (g.get('data-machine'), ws, round(v)))


if __name__ == '__main__':
    main()
