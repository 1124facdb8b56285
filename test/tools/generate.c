/*
 * anomstream-generate -- synthetic atop process/memory rows as CSV.
 *
 * Writes rows of the same shape as the real streaming files
 * (Streaming_Linux_process.csv / Streaming_Linux_memory.csv):
 *
 *   process: sequence,machine,PID,TRUN,TSLPI,TSLPU,POLI,NICE,PRI,RTPR,CPUNR,
 *            Status,EXC,State,CPU,CMD
 *   memory:  sequence,machine,PID,MINFLT,MAJFLT,VSTEXT,VSIZE,RSIZE,VGROW,
 *            RGROW,MEM,CMD
 *
 * machine by machine (ascending), sequence 1..N for each machine; --labels
 * appends "attack,type".
 *
 * Model of the data.  Each machine has a simulated clock: process row i sits
 * at tau = (i-1)/6 s, memory row i at tau = (i-1)/5.25 s -- the average rates
 * at which the real producer (and anomstream-replay) consumes them (30 rows per
 * 5 s; 50 + 2.5 late rows per 10 s).  What runs on a machine depends only on
 * (seed, machine, tau), never on the stream, so process and memory files made
 * with the same --seed describe the same processes at the same times and the
 * process/memory join of anomstream finds pairs.
 *   - ~150 long-lived normal processes per machine (fixed PID and CMD from a
 *     pool of real atop names, weighted like the real data), plus a few
 *     short-lived exited ones ("<sh>", State E, POLI 0, PRI 0).
 *   - attack processes: time is cut into 30 s slots; each slot starts 5 new
 *     attack processes (PID 10000..59999) living 2..10 slots, so about 30 are
 *     alive at any time.  70 % run an attack tool (nmap, hydra, sqlmap, ...),
 *     30 % carry a normal name (apache2, sshd, ...) with a runaway resource
 *     pattern.  A row comes from a live attack process with probability
 *     --attack-rate (default 0.12).
 *
 * LABELLING RULE (the ground truth; applied to every row, whether or not
 * --labels is given, so the same rows are attacks in labelled and unlabelled
 * output).  Numbers are the values a consumer reads, i.e. after anomstream's
 * reformat() of unit strings (132K = 132000):
 *   1. CMD is an attack tool -> attack=1, type by tool:
 *        scanning: nmap masscan nikto      password:  hydra medusa john
 *        injection: sqlmap commix          xss:       xsser xsstrike
 *        dos: hping3 slowhttptest          ddos:      goldeneye t50
 *   2. else process rows with State = 'R' and CPU >= 0.90 and TSLPI >= 8
 *        -> attack=1, type = ddos if TSLPI >= 16 else dos;
 *      memory rows with RGROW >= 50000 and MINFLT >= 20000
 *        -> attack=1, type = ddos if VGROW >= 100000 else dos;
 *   3. else attack=0, type=normal.
 * Normal processes are generated so that they never meet rule 2; attack
 * processes always meet rule 1 or 2.  The attack share is about --attack-rate.
 *
 * Invariants: output depends only on the options (own splitmix64 PRNG, no
 * time, no rand()): same options, same bytes.  Exit 0 on success, 2 on bad
 * usage, 1 on a write error.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prng.h"

/* ---------- output buffer ---------- */

static char outbuf[1 << 20];
static size_t outlen = 0;
static FILE *outf;
static int	write_failed = 0;

static void
out_flush(void)
{
	if (outlen > 0 && fwrite(outbuf, 1, outlen, outf) != outlen)
		write_failed = 1;
	outlen = 0;
}

static inline void
out_reserve(size_t n)
{
	if (outlen + n > sizeof(outbuf))
		out_flush();
}

static inline void
out_str(const char *s)
{
	size_t		n = strlen(s);

	memcpy(outbuf + outlen, s, n);
	outlen += n;
}

static inline void
out_ch(char c)
{
	outbuf[outlen++] = c;
}

static inline void
out_u64(uint64_t v)
{
	char		tmp[24];
	int			n = 0;

	do
	{
		tmp[n++] = (char) ('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (n > 0)
		outbuf[outlen++] = tmp[--n];
}

/*
 * A fixed-point number v / 10^dec written like Python's repr of a float with
 * that value: trailing zeros dropped, but at least one decimal ("0.0",
 * "0.01", "184.3", "5668.0").
 */
static inline void
out_fixed(uint64_t v, int dec)
{
	uint64_t	p = 1;
	uint64_t	frac;
	char		d[4];
	int			nd;

	for (int i = 0; i < dec; i++)
		p *= 10;
	out_u64(v / p);
	out_ch('.');
	frac = v % p;
	nd = dec;
	for (int i = dec - 1; i >= 0; i--)
	{
		d[i] = (char) ('0' + frac % 10);
		frac /= 10;
	}
	while (nd > 1 && d[nd - 1] == '0')
		nd--;
	for (int i = 0; i < nd; i++)
		out_ch(d[i]);
}

/* ---------- process names ---------- */

typedef struct cmdspec
{
	const char *name;
	int			weight;			/* relative share of rows, per instance group */
	int			instances;		/* processes with this name per machine */
	int			nice;			/* NICE as atop shows it (PRI = 120 - nice*... see below) */
	int			pri;
	int			tslpi;			/* typical sleeping threads */
	int			vstext;			/* KB of text, constant per name */
	int			vsize10;		/* VSIZE * 10 */
	int			rsize;			/* KB resident, typical */
} cmdspec;

/* Names and rough proportions follow the real streaming data. */
static const cmdspec normal_cmds[] = {
	{"atop", 240, 1, 20, 100, 1, 148, 181720, 4396},
	{"apache2", 110, 12, 0, 120, 1, 596, 1843, 5668},
	{"vmtoolsd", 55, 2, 0, 120, 1, 36, 1598, 2420},
	{"nautilus", 38, 1, 0, 120, 5, 1350, 14, 71104},
	{"compiz", 38, 1, 0, 120, 3, 10, 13, 16928},
	{"drone", 37, 1, 0, 120, 9, 978, 94800, 18384},
	{"ostinato", 37, 1, 0, 120, 11, 2132, 25, 24120},
	{"hud-service", 37, 1, 0, 120, 3, 415, 3922, 3496},
	{"irqbalance", 36, 1, 0, 120, 0, 36, 192960, 824},
	{"Xorg", 35, 1, 0, 120, 1, 2219, 2108, 46588},
	{"unity-panel-se", 35, 1, 0, 120, 3, 66, 5538, 12800},
	{"dbus-daemon", 28, 2, 0, 120, 0, 415, 393920, 2084},
	{"upstart-dbus-b", 20, 1, 0, 120, 0, 121, 223080, 640},
	{"haveged", 18, 1, 0, 120, 0, 12, 94800, 2428},
	{"mysqld", 16, 1, 0, 120, 17, 10415, 5614, 82624},
	{"sshd", 14, 2, 0, 120, 0, 589, 9960, 2412},
	{"zeitgeist-fts", 12, 1, 0, 120, 3, 66, 3630, 4120},
	{"NetworkManager", 12, 1, 0, 120, 3, 1182, 4296, 9012},
	{"gnome-terminal", 10, 1, 0, 120, 3, 306, 5788, 21044},
	{"pulseaudio", 10, 1, 10, 130, 4, 81, 3820, 6280},
	{"rtkit-daemon", 6, 1, 1, 121, 2, 36, 1688, 1124},
	{"cron", 8, 1, 0, 120, 0, 43, 2920, 1008},
	{"php5", 8, 3, 0, 120, 0, 8810, 29440, 18920},
	{"bash", 8, 3, 0, 120, 0, 976, 2292, 3504},
	{"kworker/0:1", 6, 1, 0, 120, 0, 0, 0, 0},
	{"kworker/1:0", 6, 1, 0, 120, 0, 0, 0, 0},
	{"kworker/u256:2", 6, 1, 0, 120, 0, 0, 0, 0},
	{"dhclient", 6, 1, 0, 120, 0, 445, 1580, 3164},
	{"named", 6, 1, 0, 120, 11, 702, 18940, 14380},
	{"vsftpd", 5, 1, 0, 120, 0, 152, 2496, 1532},
	{"dovecot", 5, 1, 0, 120, 0, 81, 1732, 1120},
	{"master", 5, 1, 0, 120, 0, 76, 2596, 1704},
	{"qmgr", 5, 1, 0, 120, 0, 56, 2564, 1640},
	{"cupsd", 5, 1, 0, 120, 0, 304, 7548, 3020},
	{"polkitd", 5, 1, 0, 120, 2, 112, 3680, 2808},
	{"udisksd", 4, 1, 0, 120, 4, 272, 4008, 3412},
	{"upowerd", 4, 1, 0, 120, 2, 160, 2768, 2244},
	{"colord", 4, 1, 0, 120, 2, 220, 3104, 3920},
	{"accounts-daemo", 4, 1, 0, 120, 2, 88, 2904, 2380},
	{"ModemManager", 4, 1, 0, 120, 2, 928, 3164, 3336},
	{"gvfsd", 4, 1, 0, 120, 2, 36, 1896, 1900},
	{"gvfsd-fuse", 4, 1, 0, 120, 4, 36, 4160, 1980},
	{"ibus-daemon", 4, 1, 0, 120, 2, 188, 2352, 4040},
	{"bamfdaemon", 4, 1, 0, 120, 2, 96, 3964, 7004},
	{"notify-osd", 4, 1, 0, 120, 2, 64, 4392, 9680},
	{"tracker-store", 4, 1, 10, 130, 5, 908, 4256, 14008},
	{"evolution-sour", 3, 1, 0, 120, 5, 26, 7896, 13228},
	{"whoopsie", 3, 1, 0, 120, 2, 52, 3052, 2432},
	{"kerneloops", 3, 1, 0, 120, 0, 17, 371520, 1248},
	{"acpid", 3, 1, 0, 120, 0, 24, 4280, 720},
	{"getty", 3, 2, 0, 120, 0, 24, 1532, 808},
	{"init", 3, 1, 0, 120, 0, 248, 3364, 3044},
	{"netatopd", 2, 1, 20, 100, 0, 16, 1220, 412},
	{"tcpdump", 2, 1, 0, 120, 0, 812, 2892, 4384},
};
#define N_NORMAL_CMDS (sizeof(normal_cmds) / sizeof(normal_cmds[0]))

/* Short-lived processes, seen exited (State E). */
static const char *const exited_cmds[] = {
	"<sh>", "<cron>", "<dpkg>", "<apache2>", "<dhclient>", "<nm-dhcp-clie>",
	"<debian-sa1>", "<lsof>", "<grep>", "<awk>", "<run-parts>", "<which>",
};
#define N_EXITED_CMDS (sizeof(exited_cmds) / sizeof(exited_cmds[0]))

/* Attack tools and their types (rule 1). */
static const struct
{
	const char *name;
	const char *type;
}			attack_tools[] = {
	{"nmap", "scanning"}, {"masscan", "scanning"}, {"nikto", "scanning"},
	{"hydra", "password"}, {"medusa", "password"}, {"john", "password"},
	{"sqlmap", "injection"}, {"commix", "injection"},
	{"xsser", "xss"}, {"xsstrike", "xss"},
	{"hping3", "dos"}, {"slowhttptest", "dos"},
	{"goldeneye", "ddos"}, {"t50", "ddos"},
};
#define N_ATTACK_TOOLS (sizeof(attack_tools) / sizeof(attack_tools[0]))

/* Normal-looking names used by runaway attack processes (rule 2). */
static const char *const disguise_cmds[] = {"apache2", "sshd", "php5", "mysqld", "perl", "python3"};
#define N_DISGUISE_CMDS (sizeof(disguise_cmds) / sizeof(disguise_cmds[0]))

static const char *
tool_type(const char *cmd)
{
	for (size_t i = 0; i < N_ATTACK_TOOLS; i++)
		if (strcmp(attack_tools[i].name, cmd) == 0)
			return attack_tools[i].type;
	return NULL;
}

/* ---------- the per-machine world ---------- */

typedef struct entity
{
	int			pid;
	const cmdspec *spec;
	uint32_t	cum;			/* cumulative weight, for selection */
} entity;

#define MAX_ENTITIES 256

typedef struct attacker
{
	int			pid;
	int			tool;			/* index in attack_tools, or -1 when disguised */
	int			disguise;		/* index in disguise_cmds when tool < 0 */
	uint64_t	h;				/* per-process constant bits */
} attacker;

#define SLOT_SECONDS 30.0
#define NEW_PER_SLOT 5
#define MAX_LIFE_SLOTS 10
#define MAX_ATTACKERS (NEW_PER_SLOT * MAX_LIFE_SLOTS)

typedef struct world
{
	uint64_t	seed;
	int			machine;
	entity		ent[MAX_ENTITIES];
	int			nent;
	uint32_t	total_weight;
	int64_t		att_slot;		/* slot whose live set is cached */
	attacker	att[MAX_ATTACKERS];
	int			natt;
} world;

static void
world_init(world *w, uint64_t seed, int machine)
{
	prng_t		r;
	int			pid;
	uint32_t	cum = 0;

	memset(w, 0, sizeof(*w));
	w->seed = seed;
	w->machine = machine;
	w->att_slot = INT64_MIN;
	/* Stream-independent: both streams of one machine see the same processes. */
	prng_seed(&r, hash3(seed, 0x77, (uint64_t) machine));
	pid = (int) prng_range(&r, 850, 1500);
	for (size_t c = 0; c < N_NORMAL_CMDS; c++)
	{
		const cmdspec *cs = &normal_cmds[c];

		for (int k = 0; k < cs->instances && w->nent < MAX_ENTITIES; k++)
		{
			entity	   *e = &w->ent[w->nent++];
			uint32_t	wgt = (uint32_t) (cs->weight * 1000 / cs->instances);

			pid += (int) prng_range(&r, 1, 90);
			e->pid = pid;
			e->spec = cs;
			cum += wgt ? wgt : 1;
			e->cum = cum;
		}
	}
	w->total_weight = cum;
}

static const entity *
pick_normal(const world *w, prng_t *r)
{
	uint32_t	x = (uint32_t) prng_range(r, 0, w->total_weight - 1);
	int			lo = 0, hi = w->nent - 1;

	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (w->ent[mid].cum > x)
			hi = mid;
		else
			lo = mid + 1;
	}
	return &w->ent[lo];
}

/* Recompute the attack processes alive in slot s (cached per slot). */
static void
world_attackers(world *w, int64_t s)
{
	if (w->att_slot == s)
		return;
	w->att_slot = s;
	w->natt = 0;
	for (int64_t born = s - (MAX_LIFE_SLOTS - 1); born <= s; born++)
	{
		for (int j = 0; j < NEW_PER_SLOT; j++)
		{
			uint64_t	h = hash3(w->seed ^ 0xa77ac4ULL,
								  (uint64_t) w->machine,
								  (uint64_t) (born + (1LL << 40)) * 16 + (uint64_t) j);
			int			life = 2 + (int) (h % 9);	/* 2..10 slots */
			attacker   *a;

			if (born + life <= s)
				continue;
			a = &w->att[w->natt++];
			a->h = mix64(h);
			a->pid = 10000 + (int) ((h >> 8) % 50000);
			if ((h >> 40) % 10 < 7)
			{
				a->tool = (int) ((h >> 44) % N_ATTACK_TOOLS);
				a->disguise = 0;
			}
			else
			{
				a->tool = -1;
				a->disguise = (int) ((h >> 44) % N_DISGUISE_CMDS);
			}
		}
	}
}

/* ---------- unit strings ---------- */

/*
 * Write an unsigned count as atop would ("0K", "9392K", "224.2M", "1.5G",
 * bare integers below 10000) and return the value reformat() gives it.
 */
static double
out_unit(uint64_t v)
{
	if (v == 0)
	{
		out_str("0K");
		return 0;
	}
	if (v < 10000)
	{
		out_u64(v);
		return (double) v;
	}
	if (v < 1000000)
	{
		uint64_t	k = (v + 500) / 1000;

		out_u64(k);
		out_ch('K');
		return (double) k * 1e3;
	}
	if (v < 1000000000)
	{
		uint64_t	m = (v + 50000) / 100000;	/* tenths of M */

		out_fixed(m, 1);
		out_ch('M');
		return (double) m * 1e5;
	}
	{
		uint64_t	g = (v + 50000000) / 100000000;

		out_fixed(g, 1);
		out_ch('G');
		return (double) g * 1e8;
	}
}

/* ---------- rows ---------- */

typedef struct options
{
	int			stream;			/* 0 process, 1 memory */
	long		rows;
	int			mlo, mhi;
	int			mlist[64];
	int			nm;
	uint64_t	seed;
	int			labels;
	int			unit_strings;
	double		attack_rate;
} options;

static void
emit_label(int attack, const char *type)
{
	out_ch(',');
	out_ch(attack ? '1' : '0');
	out_ch(',');
	out_str(type);
}

static void
process_row(const options *o, world *w, prng_t *r, long seq)
{
	double		tau = (double) (seq - 1) / 6.0;
	int64_t		slot = (int64_t) (tau / SLOT_SECONDS);
	int			pid, trun, tslpi, tslpu = 0, nice, pri, cpunr, exc = 0;
	const char *poli = "norm", *status, *state, *cmd;
	uint64_t	cpu100;			/* CPU * 100 */
	int			attack = 0;
	const char *type = "normal";

	world_attackers(w, slot);
	cpunr = (int) prng_range(r, 0, 3);
	if (w->natt > 0 && prng_unit(r) < o->attack_rate)
	{
		const attacker *a = &w->att[prng_range(r, 0, w->natt - 1)];

		pid = a->pid;
		nice = 0;
		pri = 120;
		status = (prng_next(r) & 1) ? "-" : "0";
		if (a->tool >= 0)
		{
			cmd = attack_tools[a->tool].name;
			trun = (int) prng_range(r, 1, 4);
			tslpi = (int) prng_range(r, 20, 60);
			state = prng_unit(r) < 0.6 ? "R" : "S";
			cpu100 = (uint64_t) prng_range(r, 20, 100);
		}
		else
		{
			cmd = disguise_cmds[a->disguise];
			trun = (int) prng_range(r, 1, 4);
			tslpi = (int) prng_range(r, 8, 40);
			state = "R";
			cpu100 = (uint64_t) prng_range(r, 90, 100);
		}
	}
	else if (prng_unit(r) < 0.02)
	{
		/* a short-lived process caught after exit */
		uint64_t	h = hash3(w->seed ^ 0xe81dULL, (uint64_t) w->machine,
							  (uint64_t) (tau / 10.0) * 8 + (uint64_t) prng_range(r, 0, 7));

		pid = 7000 + (int) (h % 3000);
		cmd = exited_cmds[(h >> 20) % N_EXITED_CMDS];
		poli = "0";
		nice = 0;
		pri = 0;
		trun = 0;
		tslpi = 0;
		state = "E";
		{
			double		u = prng_unit(r);

			status = u < 0.70 ? "NE" : (u < 0.96 ? "-" : "NS");
		}
		cpu100 = 0;
	}
	else
	{
		const entity *e = pick_normal(w, r);
		double		u = prng_unit(r);

		pid = e->pid;
		cmd = e->spec->name;
		nice = e->spec->nice;
		pri = e->spec->pri;
		tslpi = e->spec->tslpi;
		if (tslpi > 0 && prng_unit(r) < 0.2)
			tslpi += (int) prng_range(r, -1, 1);
		trun = u < 0.87 ? 0 : (u < 0.995 ? 1 : (int) prng_range(r, 2, 4));
		if (prng_unit(r) < 0.005)
			tslpu = 1;
		u = prng_unit(r);
		state = u < 0.885 ? "S" : (u < 0.99 ? "R" : (u < 0.999 ? "D" : "Z"));
		if (state[0] == 'R')
			trun = trun ? trun : 1;
		u = prng_unit(r);
		if (u < 0.66)
			cpu100 = 0;
		else if (u < 0.95)
			cpu100 = (uint64_t) prng_range(r, 1, 8);
		else if (u < 0.98)
			cpu100 = (uint64_t) prng_range(r, 9, 60);
		else
			cpu100 = (uint64_t) prng_range(r, 95, 100);
		u = prng_unit(r);
		if (strcmp(cmd, "apache2") == 0 || strcmp(cmd, "dhclient") == 0 || strcmp(cmd, "bash") == 0)
			status = u < 0.3 ? "N" : (u < 0.65 ? "0" : "-");
		else
			status = u < 0.5 ? "0" : "-";
		if (prng_unit(r) < 0.002)
			exc = prng_unit(r) < 0.7 ? 15 : 1;
		/* normal processes never meet labelling rule 2 */
		if (state[0] == 'R' && cpu100 >= 90 && tslpi >= 8)
			tslpi = 7;
	}
	if (tslpi < 0)
		tslpi = 0;

	/* labelling rule, on the values written */
	{
		const char *tt = tool_type(cmd);

		if (tt != NULL)
		{
			attack = 1;
			type = tt;
		}
		else if (state[0] == 'R' && cpu100 >= 90 && tslpi >= 8)
		{
			attack = 1;
			type = tslpi >= 16 ? "ddos" : "dos";
		}
	}

	out_reserve(512);
	out_u64((uint64_t) seq);
	out_ch(',');
	out_u64((uint64_t) w->machine);
	out_ch(',');
	out_u64((uint64_t) pid);
	out_ch(',');
	out_u64((uint64_t) trun);
	out_ch(',');
	out_u64((uint64_t) tslpi);
	out_ch(',');
	out_u64((uint64_t) tslpu);
	out_ch(',');
	out_str(poli);
	out_ch(',');
	out_u64((uint64_t) nice);
	out_ch(',');
	out_u64((uint64_t) pri);
	out_str(",0,");				/* RTPR */
	out_u64((uint64_t) cpunr);
	out_ch(',');
	out_str(status);
	out_ch(',');
	out_u64((uint64_t) exc);
	out_ch(',');
	out_str(state);
	out_ch(',');
	out_fixed(cpu100, 2);
	out_ch(',');
	out_str(cmd);
	if (o->labels)
		emit_label(attack, type);
	out_ch('\n');
}

/* Write a memory count column: plain integer, or (with --unit-strings,
 * 60 % of the time) an atop unit string.  Returns the value as read back. */
static double
mem_count(const options *o, prng_t *r, uint64_t v)
{
	if (o->unit_strings && prng_unit(r) < 0.6)
		return out_unit(v);
	out_u64(v);
	return (double) v;
}

/* Same for the KB columns with one decimal (RSIZE, VGROW, RGROW). */
static double
mem_kb(const options *o, prng_t *r, uint64_t v10)
{
	if (o->unit_strings && prng_unit(r) < 0.6)
		return out_unit((v10 + 5) / 10);
	out_fixed(v10, 1);
	return (double) v10 / 10.0;
}

static void
memory_row(const options *o, world *w, prng_t *r, long seq)
{
	double		tau = (double) (seq - 1) / 5.25;
	int64_t		slot = (int64_t) (tau / SLOT_SECONDS);
	int			pid;
	const char *cmd;
	uint64_t	minflt, majflt = 0, vstext, vsize10, rsize10, vgrow10 = 0, rgrow10 = 0, mem100;
	int			attack = 0;
	const char *type = "normal";
	double		minflt_v, vgrow_v, rgrow_v;

	world_attackers(w, slot);
	if (w->natt > 0 && prng_unit(r) < o->attack_rate)
	{
		const attacker *a = &w->att[prng_range(r, 0, w->natt - 1)];

		pid = a->pid;
		vstext = 40 + a->h % 3000;
		vsize10 = 1000 + (a->h >> 16) % 400000;
		if (a->tool >= 0)
		{
			cmd = attack_tools[a->tool].name;
			minflt = (uint64_t) prng_range(r, 200, 3000);
			rsize10 = (uint64_t) prng_range(r, 20000, 400000);
			rgrow10 = (uint64_t) prng_range(r, 0, 40000);
			vgrow10 = prng_unit(r) < 0.5 ? 0 : (uint64_t) prng_range(r, 40, 80000);
			mem100 = (uint64_t) prng_range(r, 1, 5);
		}
		else
		{
			cmd = disguise_cmds[a->disguise];
			minflt = (uint64_t) prng_range(r, 25000, 150000);
			rgrow10 = (uint64_t) prng_range(r, 600000, 4000000);
			rsize10 = rgrow10 + (uint64_t) prng_range(r, 10000, 900000);
			vgrow10 = (uint64_t) prng_range(r, 500000, 5000000);
			mem100 = (uint64_t) prng_range(r, 10, 90);
		}
		if (prng_unit(r) < 0.2)
			majflt = (uint64_t) prng_range(r, 1, 40);
	}
	else
	{
		const entity *e = pick_normal(w, r);
		const cmdspec *cs = e->spec;
		double		u = prng_unit(r);

		pid = e->pid;
		cmd = cs->name;
		vstext = (uint64_t) cs->vstext;
		vsize10 = (uint64_t) cs->vsize10;
		if (vsize10 > 0 && prng_unit(r) < 0.3)
			vsize10 += (uint64_t) prng_range(r, 0, 6);
		rsize10 = (uint64_t) cs->rsize * 10;
		if (rsize10 > 0)
			rsize10 += (uint64_t) prng_range(r, 0, 50) * 40;
		if (u < 0.56)
			minflt = 0;
		else if (u < 0.93)
			minflt = (uint64_t) prng_range(r, 1, 12);
		else if (u < 0.98)
			minflt = (uint64_t) prng_range(r, 13, 2000);
		else
			minflt = (uint64_t) prng_range(r, 1900, 19000);
		if (prng_unit(r) < 0.01)
			majflt = (uint64_t) prng_range(r, 1, 14);
		u = prng_unit(r);
		if (u < 0.08)
			vgrow10 = (uint64_t) prng_range(r, 1, 1100) * 40;
		u = prng_unit(r);
		if (u < 0.065)
			rgrow10 = (uint64_t) prng_range(r, 1, 800) * 40;
		mem100 = rsize10 / 10 / 40000;
		if (mem100 == 0 && rsize10 > 40000 && prng_unit(r) < 0.5)
			mem100 = 1;
		/* normal processes never meet labelling rule 2 */
		if (rgrow10 >= 500000 && minflt >= 20000)
			minflt = 15000;
	}

	out_reserve(512);
	out_u64((uint64_t) seq);
	out_ch(',');
	out_u64((uint64_t) w->machine);
	out_ch(',');
	out_u64((uint64_t) pid);
	out_ch(',');
	minflt_v = mem_count(o, r, minflt);
	out_ch(',');
	mem_count(o, r, majflt);
	out_ch(',');
	mem_count(o, r, vstext);
	out_ch(',');
	out_fixed(vsize10, 1);
	out_ch(',');
	mem_kb(o, r, rsize10);
	out_ch(',');
	vgrow_v = mem_kb(o, r, vgrow10);
	out_ch(',');
	rgrow_v = mem_kb(o, r, rgrow10);
	out_ch(',');
	out_fixed(mem100, 2);
	out_ch(',');
	out_str(cmd);

	{
		const char *tt = tool_type(cmd);

		if (tt != NULL)
		{
			attack = 1;
			type = tt;
		}
		else if (rgrow_v >= 50000 && minflt_v >= 20000)
		{
			attack = 1;
			type = vgrow_v >= 100000 ? "ddos" : "dos";
		}
	}
	if (o->labels)
		emit_label(attack, type);
	out_ch('\n');
}

/* ---------- main ---------- */

static void
usage(FILE *out)
{
	fprintf(out,
			"Usage: anomstream-generate --stream process|memory [options] > rows.csv\n"
			"Write synthetic atop rows shaped like the real streaming CSVs.\n"
			"\n"
			"  --stream process|memory  which file to write (required)\n"
			"  --rows N                 rows per machine (default 1000)\n"
			"  --machines SPEC          e.g. 4-8 (default) or 4,5,8\n"
			"  --seed S                 PRNG seed (default 1); same options, same bytes\n"
			"  --labels                 append attack,type (labelling rule: see README)\n"
			"  --unit-strings           memory only: write MINFLT MAJFLT VSTEXT RSIZE VGROW\n"
			"                           RGROW as atop unit strings (132K, 224.2M) at times\n"
			"  --attack-rate F          share of rows from attack processes (default 0.12)\n"
			"  -o, --output FILE        write to FILE instead of stdout\n"
			"  -h, --help               this text\n"
			"Use the same --seed for process and memory so their processes match.\n"
			"Exit: 0 ok, 1 write error, 2 usage.\n");
}

static int
parse_machines(const char *s, options *o)
{
	char	   *copy = strdup(s);
	char	   *save = NULL;

	o->nm = 0;
	for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save))
	{
		char	   *end;
		long		a = strtol(t, &end, 10), b = a;

		if (end == t)
			goto bad;
		if (*end == '-')
		{
			char	   *e2;

			b = strtol(end + 1, &e2, 10);
			if (e2 == end + 1 || *e2 != '\0')
				goto bad;
		}
		else if (*end != '\0')
			goto bad;
		if (a < 0 || b < a || b > 1000000)
			goto bad;
		for (long m = a; m <= b; m++)
		{
			if (o->nm >= 64)
				goto bad;
			o->mlist[o->nm++] = (int) m;
		}
	}
	free(copy);
	return o->nm > 0 ? 0 : -1;
bad:
	free(copy);
	return -1;
}

int
main(int argc, char **argv)
{
	options		o;
	const char *output = NULL;
	int			have_stream = 0;

	memset(&o, 0, sizeof(o));
	o.rows = 1000;
	o.seed = 1;
	o.attack_rate = 0.12;
	parse_machines("4-8", &o);

	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		char	   *end;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
		{
			usage(stdout);
			return 0;
		}
		else if (strcmp(a, "--labels") == 0)
			o.labels = 1;
		else if (strcmp(a, "--unit-strings") == 0)
			o.unit_strings = 1;
		else if (v == NULL)
		{
			fprintf(stderr, "anomstream-generate: %s: unknown option or missing value\n", a);
			fprintf(stderr, "Try --help.\n");
			return 2;
		}
		else if (strcmp(a, "--stream") == 0)
		{
			i++;
			if (strcmp(v, "process") == 0)
				o.stream = 0;
			else if (strcmp(v, "memory") == 0)
				o.stream = 1;
			else
			{
				fprintf(stderr, "anomstream-generate: --stream must be process or memory\n");
				return 2;
			}
			have_stream = 1;
		}
		else if (strcmp(a, "--rows") == 0)
		{
			i++;
			errno = 0;
			o.rows = strtol(v, &end, 10);
			if (errno || *end || o.rows < 0)
			{
				fprintf(stderr, "anomstream-generate: bad --rows %s\n", v);
				return 2;
			}
		}
		else if (strcmp(a, "--machines") == 0)
		{
			i++;
			if (parse_machines(v, &o) != 0)
			{
				fprintf(stderr, "anomstream-generate: bad --machines %s (e.g. 4-8 or 4,5,8; at most 64)\n", v);
				return 2;
			}
		}
		else if (strcmp(a, "--seed") == 0)
		{
			i++;
			errno = 0;
			o.seed = strtoull(v, &end, 10);
			if (errno || *end || *v == '-')
			{
				fprintf(stderr, "anomstream-generate: bad --seed %s\n", v);
				return 2;
			}
		}
		else if (strcmp(a, "--attack-rate") == 0)
		{
			i++;
			o.attack_rate = strtod(v, &end);
			if (*end || !(o.attack_rate >= 0 && o.attack_rate <= 1))
			{
				fprintf(stderr, "anomstream-generate: --attack-rate must be in [0,1]\n");
				return 2;
			}
		}
		else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0)
		{
			i++;
			output = v;
		}
		else
		{
			fprintf(stderr, "anomstream-generate: unknown option %s\n", a);
			fprintf(stderr, "Try --help.\n");
			return 2;
		}
	}
	if (!have_stream)
	{
		fprintf(stderr, "anomstream-generate: --stream process|memory is required\n");
		fprintf(stderr, "Try --help.\n");
		return 2;
	}
	if (o.unit_strings && o.stream != 1)
	{
		fprintf(stderr, "anomstream-generate: --unit-strings applies to --stream memory only\n");
		return 2;
	}

	outf = stdout;
	if (output != NULL && (outf = fopen(output, "w")) == NULL)
	{
		fprintf(stderr, "anomstream-generate: cannot open %s: %s\n", output, strerror(errno));
		return 1;
	}

	out_str(o.stream == 0
			? "sequence,machine,PID,TRUN,TSLPI,TSLPU,POLI,NICE,PRI,RTPR,CPUNR,Status,EXC,State,CPU,CMD"
			: "sequence,machine,PID,MINFLT,MAJFLT,VSTEXT,VSIZE,RSIZE,VGROW,RGROW,MEM,CMD");
	if (o.labels)
		out_str(",attack,type");
	out_ch('\n');

	{
		static world w;

		for (int mi = 0; mi < o.nm && !write_failed; mi++)
		{
			prng_t		r;

			world_init(&w, o.seed, o.mlist[mi]);
			prng_seed(&r, hash3(o.seed, (uint64_t) (o.stream + 1), (uint64_t) o.mlist[mi]));
			for (long seq = 1; seq <= o.rows && !write_failed; seq++)
			{
				if (o.stream == 0)
					process_row(&o, &w, &r, seq);
				else
					memory_row(&o, &w, &r, seq);
			}
		}
	}
	out_flush();
	if (fflush(outf) != 0 || write_failed || (outf != stdout && fclose(outf) != 0))
	{
		fprintf(stderr, "anomstream-generate: write error: %s\n", strerror(errno));
		return 1;
	}
	return 0;
}
