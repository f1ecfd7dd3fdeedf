from launch.main import run

run()
