# Plot of one bench/compare.sh run, from the plot-SCENARIO-PROXY.dat files
# report.py writes (columns: rate, CPU us per call, p99 ms): proxy CPU per
# call and p99 response time against the offered rate, one line per proxy
# and scenario. Run in the run's directory: gnuplot -e "outdir='DIR'" plot.gp
if (!exists("outdir")) outdir = "."
files = system("ls plot-*.dat 2>/dev/null")
if (strlen(files) == 0) exit
name(f) = substr(f, 6, strlen(f) - 4)
# Colour by scenario (A..D), solid line for sipbox, dashed for Kamailio.
colour(f) = strstrt("ABCD", substr(f, 6, 6))
dash(f) = strstrt(f, "sipbox") ? 1 : 2

set terminal pngcairo size 1400,600 font ",10" noenhanced
set output outdir . "/compare.png"
set multiplot layout 1,2 title "sipbox vs Kamailio: " . outdir
set key top left
set grid
set xlabel "offered rate (calls/s)"
set logscale x 2
set offsets graph 0.05, graph 0.05, 0, 0
# Tics at the measured rates (report.py writes them to rates.txt).
rates = system("cat rates.txt 2>/dev/null")
if (strlen(rates) > 0) { set xtics (); do for [r in rates] { set xtics add (r r + 0) } }

set ylabel "proxy CPU per call (us)"
set title "CPU per call (lower is better)"
set yrange [0:*]
plot for [f in files] f using 1:2 with linespoints lc colour(f) dt dash(f) pointsize 1.2 title name(f)

set ylabel "p99 response time (ms)"
set title "p99 INVITE->200 / REGISTER->200 (D includes the 1 s hold)"
set logscale y
set yrange [*:*]
plot for [f in files] f using 1:3 with linespoints lc colour(f) dt dash(f) pointsize 1.2 title name(f)
unset multiplot
